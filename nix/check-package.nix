# Evaluates nix/package.nix and nix/default.nix WITHOUT nixpkgs: `lib` and `rustPlatform` are stubs
# written with builtins (buildRustPackage returns its arguments), while Cargo.toml is read for real
# with builtins.fromTOML. Checks the arguments given to buildRustPackage.
#
#   nix-instantiate --eval --strict nix/check-package.nix
#
# prints the list of failed checks' names; `[ ]` means every check passed.
let
  lib = {
    importTOML = p: builtins.fromTOML (builtins.readFile p);
    fileset = {
      unions = l: l;
      # The real toSource copies only these paths to the store; the stub returns them.
      toSource = { root, fileset }: { inherit root fileset; };
    };
    licenses.agpl3Plus = "AGPL-3.0-or-later";
    platforms.linux = [ "x86_64-linux" ];
  };
  rustPlatform.buildRustPackage = args: args;
  pkgs = {
    callPackage = f: extra: import f ({ inherit lib rustPlatform; } // extra);
  };

  p = import ./package.nix { inherit lib rustPlatform; };
  d = import ./default.nix { inherit pkgs; };
  checks = {
    name = p.pname == "grenier";
    versionFromCargoToml = p.version == "0.1.0";
    lockFileExists = builtins.pathExists p.cargoLock.lockFile;
    sourcesExist = builtins.all builtins.pathExists p.src.fileset;
    sourcesHaveManifestAndCode =
      builtins.length p.src.fileset == 5 && builtins.pathExists (p.src.root + "/src/main.rs");
    binaryOnly = p.cargoBuildFlags == [ "--bin" "grenier" ];
    mainProgram = p.meta.mainProgram == "grenier";
    license = p.meta.license == "AGPL-3.0-or-later";
    defaultIsPackage = d.pname == "grenier" && d.package.pname == "grenier";
    defaultExportsModule = builtins.pathExists d.module;
  };
in
builtins.filter (n: !checks.${n}) (builtins.attrNames checks)
