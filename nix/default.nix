# Flake-less entry point.
#
#   nix-build nix/                      # builds ./result/bin/grenier
#   nix-build nix/ -A package           # the same
#
# In a NixOS configuration:
#
#   imports = [ /path/to/grenier/nix/module.nix ];
#   services.grenier.package = (import /path/to/grenier/nix { inherit pkgs; }).package;
#
# See nix/README.md for the module's options and what was checked.
{
  pkgs ? import <nixpkgs> { },
}:

let
  package = pkgs.callPackage ./package.nix { };
in
package
// {
  inherit package;
  module = ./module.nix;
}
