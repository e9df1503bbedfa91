# NixOS module for a Grenier node.
#
#   imports = [ ./path/to/grenier/nix/module.nix ];
#   services.grenier = {
#     enable = true;
#     rpcSecretFile = "/run/keys/grenier-rpc-secret";     # `openssl rand -hex 32`, the same on every node
#     adminTokenFile = "/run/keys/grenier-admin-token";
#     settings = {
#       replication_factor = 3;
#       rpc_public_addr = "203.0.113.7:3901";
#       bootstrap_peers = [ "<node-id>@198.51.100.4:3901" ];
#       s3_api.root_domain = ".s3.example.org";
#       s3_web.root_domain = ".web.example.org";
#     };
#     firewall.openRpc = true;   # peers on other sites must reach the RPC port
#   };
#
# `settings` is the node's TOML configuration (doc/configuration.md), written to the Nix store and
# linked as /etc/grenier.toml, so `grenier status` works without `-c`. Secrets never go in `settings`
# (the store is world-readable, and the node refuses a world-readable file holding a secret): give
# their files with the *File options; they reach the service through systemd credentials, so the
# source files can stay root-only (chmod 600).
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.grenier;
  toml = pkgs.formats.toml { };

  credDir = "/run/credentials/grenier.service";

  # Secret name in the configuration -> option holding its file.
  secrets = lib.filterAttrs (_: file: file != null) {
    rpc_secret = cfg.rpcSecretFile;
    admin_token = cfg.adminTokenFile;
    metrics_token = cfg.metricsTokenFile;
  };

  secretSettings =
    lib.optionalAttrs (secrets ? rpc_secret) { rpc_secret_file = "${credDir}/rpc_secret"; }
    // lib.optionalAttrs (secrets ? admin_token || secrets ? metrics_token) {
      admin =
        lib.optionalAttrs (secrets ? admin_token) { admin_token_file = "${credDir}/admin_token"; }
        // lib.optionalAttrs (secrets ? metrics_token) {
          metrics_token_file = "${credDir}/metrics_token";
        };
    };

  finalSettings = lib.recursiveUpdate cfg.settings secretSettings;
  configFile = toml.generate "grenier.toml" finalSettings;

  # Every directory the node writes: metadata_dir and each data_dir.
  dataDirs =
    let
      d = cfg.settings.data_dir;
    in
    if builtins.isString d then [ d ] else map (e: e.path) d;
  stateDirs = [ cfg.settings.metadata_dir ] ++ dataDirs;

  # "[::]:3901" -> 3901
  portOf = addr: lib.toInt (lib.last (lib.splitString ":" addr));
  rpcPort = portOf (cfg.settings.rpc_bind_addr or "[::]:3901");
  s3Port = portOf (cfg.settings.s3_api.api_bind_addr or "[::]:3900");
  webPort = portOf (cfg.settings.s3_web.bind_addr or "[::]:3902");

  inlineSecrets = lib.filter (n: n != null) [
    (if cfg.settings ? rpc_secret then "rpc_secret" else null)
    (if (cfg.settings.admin or { }) ? admin_token then "admin.admin_token" else null)
    (if (cfg.settings.admin or { }) ? metrics_token then "admin.metrics_token" else null)
  ];
in
{
  options.services.grenier = {
    enable = lib.mkEnableOption "the Grenier S3-compatible object store node";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The grenier package to run.";
    };

    settings = lib.mkOption {
      description = ''
        The node's configuration, as in doc/configuration.md (unknown keys are refused by the node).
        Do not put rpc_secret, admin_token or metrics_token here: use the *File options.
      '';
      default = { };
      type = lib.types.submodule {
        freeformType = toml.type;
        options = {
          metadata_dir = lib.mkOption {
            type = lib.types.str;
            default = "/var/lib/grenier/meta";
            description = "Node key, layout, peer list and metadata database.";
          };
          data_dir = lib.mkOption {
            type = lib.types.either lib.types.str (lib.types.listOf (lib.types.attrsOf toml.type));
            default = "/var/lib/grenier/data";
            description = ''
              Where blocks are stored: one path, or a list of `{ path = "/mnt/disk1"; capacity = "2T"; }`
              (written as [[data_dir]] tables).
            '';
          };
          replication_factor = lib.mkOption {
            type = lib.types.ints.between 1 7;
            description = "Copies of each object; the same on every node (3 for three sites).";
          };
        };
      };
    };

    rpcSecretFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/run/keys/grenier-rpc-secret";
      description = ''
        File holding the cluster secret (64 hex characters, the same on every node). Required unless
        settings.rpc_secret_file points to a file the grenier user can read.
      '';
    };

    adminTokenFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = ''
        File holding the admin API bearer token (without it the admin API answers 403). A string, not a
        Nix path literal, so that the secret is not copied to the Nix store.
      '';
    };

    metricsTokenFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = "File holding the token of /metrics (open without it).";
    };

    logFilter = lib.mkOption {
      type = lib.types.str;
      default = "grenier=info";
      description = "RUST_LOG for the node.";
    };

    firewall = {
      openRpc = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = "Open the RPC port (rpc_bind_addr) in the firewall: the other nodes must reach it.";
      };
      openS3 = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = ''
          Open the S3 API port. Leave closed when a reverse proxy on this machine serves it (doc/reverse-proxy.md).
        '';
      };
      openWeb = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = "Open the website endpoint port ([s3_web] bind_addr).";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = inlineSecrets == [ ];
        message = ''
          services.grenier.settings must not hold secrets (${lib.concatStringsSep ", " inlineSecrets}): the Nix
          store is world-readable. Use services.grenier.rpcSecretFile / adminTokenFile / metricsTokenFile.
        '';
      }
      {
        assertion = cfg.rpcSecretFile != null || cfg.settings ? rpc_secret_file;
        message = "services.grenier: set rpcSecretFile (the cluster secret, `openssl rand -hex 32`).";
      }
    ];

    users.users.grenier = {
      isSystemUser = true;
      group = "grenier";
      home = "/var/lib/grenier";
      description = "Grenier object store";
    };
    users.groups.grenier = { };

    environment.etc."grenier.toml".source = configFile;
    environment.systemPackages = [ cfg.package ];

    # Directories outside /var/lib/grenier (other drives) are created here, private to the node.
    systemd.tmpfiles.rules = map (d: "d ${d} 0700 grenier grenier - -") stateDirs;

    networking.firewall.allowedTCPPorts =
      lib.optional cfg.firewall.openRpc rpcPort
      ++ lib.optional cfg.firewall.openS3 s3Port
      ++ lib.optional (cfg.firewall.openWeb && cfg.settings ? s3_web) webPort;

    systemd.services.grenier = {
      description = "Grenier S3-compatible geo-distributed object store";
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      wantedBy = [ "multi-user.target" ];
      restartTriggers = [ configFile ];
      environment.RUST_LOG = cfg.logFilter;

      serviceConfig = {
        Type = "simple";
        ExecStart = "${lib.getExe cfg.package} -c ${configFile} server";
        User = "grenier";
        Group = "grenier";
        DynamicUser = false;
        LoadCredential = lib.mapAttrsToList (name: file: "${name}:${file}") secrets;
        KillSignal = "SIGTERM";
        TimeoutStopSec = 30;
        Restart = "on-failure";
        RestartSec = "5s";

        StateDirectory = "grenier";
        StateDirectoryMode = "0700";
        WorkingDirectory = "/var/lib/grenier";
        # "-": a missing path is not an error at namespace setup (tmpfiles creates them at activation).
        ReadWritePaths = map (d: "-" + d) stateDirs;
        UMask = "0077";
        LimitNOFILE = 65536;

        # The same hardening as script/grenier.service.
        NoNewPrivileges = true;
        AmbientCapabilities = "";
        CapabilityBoundingSet = "";
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        PrivateUsers = true;
        ProtectHostname = true;
        ProtectClock = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectProc = "invisible";
        ProcSubset = "pid";
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RemoveIPC = true;
        KeyringMode = "private";
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
        ];
        SystemCallErrorNumber = "EPERM";
        DevicePolicy = "closed";
      };
    };
  };
}
