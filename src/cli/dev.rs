//! `grenier dev`: a single local node with its layout applied, configured in one directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use rand::RngCore;

use crate::layout::NodeRole;
use crate::layout::system::DiskSpace;
use crate::server::Node;
use crate::util::config::Config;
use crate::util::size::format_size;

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Directory for the configuration, metadata and data (reused on restart).
    #[arg(long, default_value = "grenier-dev")]
    pub dir: PathBuf,
    /// First port: S3 on P, RPC on P+1, web on P+2, admin on P+3.
    #[arg(long, default_value_t = 3900)]
    pub port_base: u16,
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// The configuration `dev` writes on first start.
pub fn dev_config_text(port_base: u16) -> String {
    let p = port_base;
    format!(
        r#"# Written by `grenier dev`: a single-node store for development. Secrets below are random.
metadata_dir = "meta"
data_dir = "data"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
api_bind_addr = "127.0.0.1:{s3}"
s3_region = "garage"

[s3_web]
bind_addr = "127.0.0.1:{web}"
root_domain = ".web.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{token}"
"#,
        rpc = p + 1,
        s3 = p,
        web = p + 2,
        admin = p + 3,
        secret = random_hex(32),
        token = random_hex(24),
    )
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// The dev key (named `dev`) and bucket (`dev`), created on first start and reused afterwards.
async fn dev_key_and_bucket(node: &Node) -> Result<(String, String)> {
    use crate::model::key::Permissions;
    let m = &node.model;
    let key = match m.find_key("dev").await {
        Ok(k) => k,
        Err(_) => m.create_key("dev").await.context("creating the dev key")?,
    };
    m.set_key_permissions(&key.id, None, Some(true)).await?;
    let bucket = match m.bucket_by_name("dev").await? {
        Some(b) => b,
        None => m
            .create_bucket("dev", None)
            .await
            .context("creating the dev bucket")?,
    };
    m.set_key_permissions(&key.id, Some((bucket.id, Permissions::ALL)), None)
        .await?;
    let secret = key.params().map(|p| p.secret.clone()).unwrap_or_default();
    Ok((key.id, secret))
}

/// Write a private file (0600), replacing it.
fn write_private_replace(path: &Path, text: &str) -> Result<()> {
    let _ = std::fs::remove_file(path);
    write_private(path, text)
}

pub async fn run(args: &DevArgs) -> Result<()> {
    let cfg_path = args.dir.join("grenier.toml");
    let fresh = !cfg_path.exists();
    if fresh {
        // Private (0700), like the config file (0600): it holds the cluster secret and admin token.
        crate::util::fs::create_private_dir(&args.dir)
            .with_context(|| format!("cannot create {}", args.dir.display()))?;
        write_private(&cfg_path, &dev_config_text(args.port_base))?;
    }
    let config = Config::load(&cfg_path)?;
    let node = Node::start(config.clone())
        .await
        .context("cannot start the dev node")?;
    if node.layout.version() == 0 {
        let data = &config.data_dir[0].path;
        let capacity = DiskSpace::of(data)
            .map(|d| d.total)
            .filter(|t| *t > 0)
            .unwrap_or(100_000_000_000);
        let id = node.net.id;
        node.layout.update(|h| {
            h.stage_role(
                id,
                Some(NodeRole {
                    zone: "dev".into(),
                    capacity: Some(capacity),
                    tags: vec![],
                }),
            );
            h.apply(None)
        })?;
    }
    let admin = config.admin.api_bind_addr;
    let (key_id, secret) = dev_key_and_bucket(&node).await?;
    let endpoint = format!("http://{}", config.s3_api.api_bind_addr);
    let region = &config.s3_api.s3_region;
    let creds = args.dir.join("credentials.env");
    let creds_text = format!(
        "export AWS_ACCESS_KEY_ID={key_id}\nexport AWS_SECRET_ACCESS_KEY={secret}\n\
         export AWS_ENDPOINT_URL={endpoint}\nexport AWS_REGION={region}\n\
         export AWS_DEFAULT_REGION={region}\n"
    );
    write_private_replace(&creds, &creds_text)?;
    println!(
        "Grenier dev node is running{} (Ctrl-C to stop).",
        if fresh { "" } else { ", reusing its directory" }
    );
    println!();
    println!("  S3 endpoint    {endpoint}  (region {region})");
    println!("  Bucket         dev");
    println!("  Access key     {key_id}");
    println!("  Secret key     {secret}");
    println!(
        "  Credentials    {}  (source it for the aws CLI and SDKs)",
        creds.display()
    );
    let website = config.s3_web.as_ref().map(|w| match &w.root_domain {
        Some(d) => format!("http://dev{d}:{}/", w.bind_addr.port()),
        None => format!("http://{}/  (Host: dev)", w.bind_addr),
    });
    if let Some(url) = &website {
        println!("  Website        {url}  (once enabled, see below)");
    }
    println!("  Admin API      http://{admin}");
    println!(
        "  Node           {}@{}",
        node.net.id,
        config.rpc_public_addr.as_deref().unwrap_or("-")
    );
    println!(
        "  Layout         version {}, 1 node in zone `dev`, capacity {}",
        node.layout.version(),
        {
            let h = node.layout.history();
            h.current()
                .roles
                .values()
                .next()
                .and_then(|r| r.capacity)
                .map(format_size)
                .unwrap_or_default()
        }
    );
    println!("  Config         {}", cfg_path.display());
    println!();
    println!("Try:");
    println!("  . {}", creds.display());
    println!("  echo hello > hello.txt && aws s3 cp hello.txt s3://dev/ && aws s3 ls s3://dev/");
    println!("  cargo run --release -- -c {} status", cfg_path.display());
    if let Some(url) = &website {
        println!();
        println!("Serve the dev bucket as a website (its objects become readable by anyone):");
        println!(
            "  cargo run --release -- -c {0} bucket website dev --allow\n  \
             cargo run --release -- -c {0} bucket public dev --read",
            cfg_path.display()
        );
        println!(
            "  echo '<h1>hello</h1>' > index.html && aws s3 cp index.html s3://dev/ && curl {url}"
        );
    }
    node.run_until_signal().await;
    Ok(())
}
