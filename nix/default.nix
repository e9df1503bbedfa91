# Build Grenier with Nix: nix-build nix/
# Uses the nixpkgs Rust toolchain; the project targets Rust 1.95 (see Cargo.toml rust-version).
{ pkgs ? import <nixpkgs> { } }:

pkgs.rustPlatform.buildRustPackage {
  pname = "grenier";
  version = "0.1.0";
  src = pkgs.lib.cleanSource ./..;
  cargoLock.lockFile = ../Cargo.lock;
  # Integration tests start local server processes; run them with ./script/test instead.
  doCheck = false;
  meta = with pkgs.lib; {
    description = "S3-compatible geo-distributed object store for community hosting";
    license = licenses.agpl3Plus;
    mainProgram = "grenier";
  };
}
