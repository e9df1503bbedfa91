# Grenier, built from this repository with nixpkgs' Rust toolchain.
#
#   nix-build nix/            (nix/default.nix calls this file)
#
# The project needs Rust >= 1.95 (Cargo.toml `rust-version`, edition 2024). If your nixpkgs has an older
# rustc, pass a newer `rustPlatform` (e.g. from an overlay): `callPackage ./package.nix { rustPlatform = ...; }`.
{
  lib,
  rustPlatform,
}:

let
  root = ./..;
  # Only what cargo needs: a change to the docs or scripts does not rebuild the package.
  # Cargo.toml declares the `it` test and the benches, so cargo wants their files to exist.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/Cargo.toml")
      (root + "/Cargo.lock")
      (root + "/src")
      (root + "/tests")
      (root + "/benches")
    ];
  };
  manifest = lib.importTOML (root + "/Cargo.toml");
in
rustPlatform.buildRustPackage {
  pname = "grenier";
  inherit (manifest.package) version;
  inherit src;

  cargoLock.lockFile = root + "/Cargo.lock";

  # Build only the binary (not the benches, whose dev-dependencies include the whole AWS SDK).
  cargoBuildFlags = [ "--bin" "grenier" ];

  # The unit tests are fast, but the integration tests (tests/it) start server processes on 127.x.y.z
  # loopback addresses, which the Nix build sandbox may not allow. Run them with ./script/test.
  doCheck = false;

  meta = {
    description = manifest.package.description;
    license = lib.licenses.agpl3Plus;
    mainProgram = "grenier";
    platforms = lib.platforms.linux;
  };
}
