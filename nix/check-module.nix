# Evaluates nix/module.nix WITHOUT nixpkgs, with a stub `lib` and `pkgs` written with builtins only,
# and checks what the module's `config` produces for a three-site node. This is not the NixOS module
# system (no option merging, no type checking): `cfg` below is given with every default filled in by
# hand. It checks the module's own logic: the generated settings, secrets through systemd credentials,
# ReadWritePaths, firewall ports, the ExecStart line and the assertions.
#
#   nix-instantiate --eval --strict nix/check-module.nix
#
# prints the list of failed checks' names; `[ ]` means every check passed.
let
  # ---- stub lib: just the functions module.nix calls -------------------------------------------
  lib = rec {
    mkEnableOption = d: { _option = "enable"; description = d; };
    mkOption = o: o // { _option = true; };
    literalExpression = e: { _literal = e; };
    mkIf = cond: value: { _if = cond; inherit value; };
    types = rec {
      str = "str";
      bool = "bool";
      package = "package";
      path = "path";
      nullOr = t: "nullOr ${t}";
      listOf = t: "listOf ${builtins.toString t}";
      attrsOf = t: "attrsOf ${builtins.toString t}";
      either = a: b: "either";
      submodule = m: { _submodule = m; };
      ints.between = lo: hi: "int ${toString lo}..${toString hi}";
    };
    filterAttrs =
      pred: set:
      builtins.listToAttrs (
        builtins.filter (x: pred x.name x.value) (
          map (n: {
            name = n;
            value = set.${n};
          }) (builtins.attrNames set)
        )
      );
    optionalAttrs = c: s: if c then s else { };
    optional = c: x: if c then [ x ] else [ ];
    recursiveUpdate =
      a: b:
      a
      // builtins.mapAttrs (
        n: v: if builtins.isAttrs v && a ? ${n} && builtins.isAttrs a.${n} then recursiveUpdate a.${n} v else v
      ) b;
    toInt = s: builtins.fromJSON s;
    last = l: builtins.elemAt l (builtins.length l - 1);
    splitString = sep: s: builtins.filter builtins.isString (builtins.split sep s);
    filter = builtins.filter;
    concatStringsSep = builtins.concatStringsSep;
    mapAttrsToList = f: set: map (n: f n set.${n}) (builtins.attrNames set);
    getExe = p: "${p.outPath}/bin/${p.meta.mainProgram}";
  };

  # ---- stub pkgs ------------------------------------------------------------------------------------
  pkgs = {
    formats.toml = _: {
      type = "toml value";
      # The real one writes TOML; the stub keeps the value to inspect it.
      generate = name: value: {
        outPath = "/nix/store/00000000000000000000000000000000-${name}";
        _value = value;
      };
    };
    callPackage = _: _: {
      outPath = "/nix/store/11111111111111111111111111111111-grenier-0.1.0";
      meta.mainProgram = "grenier";
    };
  };

  module = import ./module.nix;

  # A node of a three-site cluster, two drives, every secret in a file.
  cfgFor = settings: extra: {
    services.grenier = {
      enable = true;
      package = pkgs.callPackage null { };
      rpcSecretFile = "/run/keys/grenier-rpc";
      adminTokenFile = "/run/keys/grenier-admin";
      metricsTokenFile = null;
      logFilter = "grenier=info";
      firewall = {
        openRpc = true;
        openS3 = false;
        openWeb = true;
      };
      inherit settings;
    } // extra;
  };
  settings = {
    metadata_dir = "/var/lib/grenier/meta";
    data_dir = [
      {
        path = "/mnt/disk1/grenier";
        capacity = "2T";
      }
      {
        path = "/mnt/disk2/grenier";
        capacity = "4T";
      }
    ];
    replication_factor = 3;
    rpc_bind_addr = "[::]:3901";
    rpc_public_addr = "203.0.113.7:3901";
    bootstrap_peers = [ "0123@198.51.100.4:3901" ];
    s3_api = {
      api_bind_addr = "127.0.0.1:3900";
      root_domain = ".s3.example.org";
    };
    s3_web = {
      bind_addr = "[::]:3902";
      root_domain = ".web.example.org";
    };
    admin.api_bind_addr = "127.0.0.1:3903";
  };

  eval = config: module { inherit config lib pkgs; };
  out = eval (cfgFor settings { });
  c = out.config.value;
  svc = c.systemd.services.grenier.serviceConfig;
  toml = c.environment.etc."grenier.toml".source._value;

  # The same node with an inline secret: the first assertion must fail.
  bad = (eval (cfgFor (settings // { rpc_secret = "00"; }) { })).config.value;

  checks = {
    enabledOnlyWhenEnabled = out.config._if == true;
    secretsAreCredentials =
      svc.LoadCredential == [
        "admin_token:/run/keys/grenier-admin"
        "rpc_secret:/run/keys/grenier-rpc"
      ];
    rpcSecretFileInToml = toml.rpc_secret_file == "/run/credentials/grenier.service/rpc_secret";
    adminTokenFileInToml = toml.admin.admin_token_file == "/run/credentials/grenier.service/admin_token";
    adminSectionKept = toml.admin.api_bind_addr == "127.0.0.1:3903";
    noInlineSecret = !(toml ? rpc_secret) && !(toml.admin ? admin_token);
    readWritePaths =
      svc.ReadWritePaths == [
        "-/var/lib/grenier/meta"
        "-/mnt/disk1/grenier"
        "-/mnt/disk2/grenier"
      ];
    tmpfiles = builtins.elem "d /mnt/disk2/grenier 0700 grenier grenier - -" c.systemd.tmpfiles.rules;
    firewallPorts = c.networking.firewall.allowedTCPPorts == [
      3901
      3902
    ];
    execStart =
      svc.ExecStart
      == "/nix/store/11111111111111111111111111111111-grenier-0.1.0/bin/grenier -c /nix/store/00000000000000000000000000000000-grenier.toml server";
    hardening =
      svc.ProtectSystem == "strict"
      && svc.NoNewPrivileges
      && svc.CapabilityBoundingSet == ""
      && svc.User == "grenier"
      && !svc.DynamicUser
      && svc.LimitNOFILE == 65536;
    assertionsPass = builtins.all (a: a.assertion) c.assertions;
    inlineSecretRefused = !(builtins.head bad.assertions).assertion;
    userAndGroup = c.users.users.grenier.isSystemUser && c.users.groups ? grenier;
    optionsDeclared =
      out.options.services.grenier ? settings
      && out.options.services.grenier.firewall ? openRpc
      && out.options.services.grenier.settings.type._submodule.options.replication_factor.type
        == "int 1..7";
  };
in
builtins.filter (n: !checks.${n}) (builtins.attrNames checks)
