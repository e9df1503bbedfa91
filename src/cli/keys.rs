//! `grenier key ...` and `grenier bucket ...`.

use anyhow::{Result, bail};
use clap::Subcommand;

use super::client::AdminClient;
use super::table::format_table;
use super::{JsonFlag, enc, print_json};
use crate::admin::api;
use crate::util::size::format_size;

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Create an access key (prints its id and secret once).
    Create {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Every access key.
    List(JsonFlag),
    /// A key's name, rights and buckets.
    Info {
        /// Key id or name.
        key: String,
        #[arg(long)]
        show_secret: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete a key.
    Delete { key: String },
    /// Add a key from another S3 store, keeping its id and secret.
    Import {
        id: String,
        secret: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Let a key create buckets through S3.
    Allow {
        key: String,
        #[arg(long, required = true)]
        create_bucket: bool,
    },
    /// Stop a key from creating buckets.
    Deny {
        key: String,
        #[arg(long, required = true)]
        create_bucket: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BucketCmd {
    /// Create a bucket.
    Create { name: String },
    /// Every bucket.
    List(JsonFlag),
    /// Size, object count and keys of a bucket.
    Info {
        bucket: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a bucket that holds no object (uploads under way are aborted with it).
    Delete { bucket: String },
    /// Give a bucket another name: global, or with --local only for one key.
    Alias {
        bucket: String,
        alias: String,
        /// The key (id or name) that alone sees this name.
        #[arg(long)]
        local: Option<String>,
    },
    /// Remove a name given with `alias`.
    Unalias {
        alias: String,
        #[arg(long)]
        local: Option<String>,
    },
    /// Open every object of a bucket to reads without a signature (GET/HEAD by URL, as Mastodon and
    /// PeerTube serve media), or close it again. The listing stays private.
    Public {
        bucket: String,
        /// Anyone may read every object.
        #[arg(long, conflicts_with = "deny", required_unless_present = "deny")]
        read: bool,
        /// Only what keys (and objects' own public-read ACLs) allow.
        #[arg(long)]
        deny: bool,
    },
    /// Serve a bucket as a static website on the `[s3_web]` endpoint (its publicly readable
    /// objects: see `bucket public`), or stop.
    Website {
        bucket: String,
        /// Serve it.
        #[arg(long, conflicts_with = "deny", required_unless_present = "deny")]
        allow: bool,
        /// Stop serving it (removes its website configuration).
        #[arg(long)]
        deny: bool,
        /// Served for a path ending in `/` (and the root).
        #[arg(long, default_value = "index.html", conflicts_with = "deny")]
        index_document: String,
        /// Served with the status of a 404 or 403.
        #[arg(long, conflicts_with = "deny")]
        error_document: Option<String>,
    },
    /// Give a key rights on a bucket.
    Allow(Rights),
    /// Take rights away from a key.
    Deny(Rights),
}

#[derive(clap::Args, Debug)]
pub struct Rights {
    pub bucket: String,
    /// Key id or name.
    #[arg(long)]
    pub key: String,
    #[arg(long)]
    pub read: bool,
    #[arg(long)]
    pub write: bool,
    #[arg(long)]
    pub owner: bool,
}

pub async fn key(client: &AdminClient, cmd: &KeyCmd) -> Result<()> {
    match cmd {
        KeyCmd::Create { name, json } => {
            let req = api::CreateRequest {
                name: Some(name.clone()),
            };
            let v: api::KeyInfo = client.post_as("/v1/keys", &req).await?;
            show_key(v, *json, true);
        }
        KeyCmd::List(f) => {
            let v: api::KeyList = client.get_as("/v1/keys").await?;
            if f.json {
                print_json(&v.keys);
            } else {
                let mut rows = vec![vec!["ID".to_string(), "NAME".to_string()]];
                for k in v.keys {
                    rows.push(vec![k.id, k.name]);
                }
                print!("{}", format_table(&rows));
            }
        }
        KeyCmd::Info {
            key,
            show_secret,
            json,
        } => {
            let v: api::KeyInfo = client
                .get_as(&format!(
                    "/v1/keys/info?key={}&show_secret={show_secret}",
                    enc(key)
                ))
                .await?;
            show_key(v, *json, *show_secret);
        }
        KeyCmd::Delete { key } => {
            let req = api::KeyRequest {
                key: Some(key.clone()),
                create_bucket: None,
            };
            let _: api::Deleted = client.post_as("/v1/keys/delete", &req).await?;
            println!("key {key} deleted");
        }
        KeyCmd::Import {
            id,
            secret,
            name,
            json,
        } => {
            let req = api::ImportKeyRequest {
                id: Some(id.clone()),
                secret: Some(secret.clone()),
                name: Some(name.as_deref().unwrap_or(id).to_string()),
            };
            let v: api::KeyInfo = client.post_as("/v1/keys/import", &req).await?;
            show_key(v, *json, false);
        }
        KeyCmd::Allow { key, .. } | KeyCmd::Deny { key, .. } => {
            let allow = matches!(cmd, KeyCmd::Allow { .. });
            let req = api::KeyRequest {
                key: Some(key.clone()),
                create_bucket: Some(allow),
            };
            let _: api::KeyInfo = client.post_as("/v1/keys/allow", &req).await?;
            println!(
                "key {key} {} create buckets",
                if allow { "may now" } else { "may no longer" }
            );
        }
    }
    Ok(())
}

/// A key as `key create|import|info` print it; the secret only when asked for.
fn show_key(mut v: api::KeyInfo, json: bool, secret: bool) {
    if !secret {
        v.secret = None;
    }
    if json {
        print_json(&v);
        return;
    }
    println!("Key ID:      {}", v.id);
    println!("Name:        {}", v.name);
    if let Some(sec) = &v.secret {
        println!("Secret key:  {sec}");
    }
    println!(
        "Can create buckets: {}",
        if v.allow_create_bucket { "yes" } else { "no" }
    );
    if !v.buckets.is_empty() {
        let mut rows = vec![
            ["BUCKET", "READ", "WRITE", "OWNER"]
                .map(String::from)
                .to_vec(),
        ];
        for b in v.buckets {
            rows.push(vec![b.name, yes(b.read), yes(b.write), yes(b.owner)]);
        }
        print!("{}", format_table(&rows));
    }
}

pub async fn bucket(client: &AdminClient, cmd: &BucketCmd) -> Result<()> {
    match cmd {
        BucketCmd::Create { name } => {
            let req = api::CreateRequest {
                name: Some(name.clone()),
            };
            let _: api::BucketInfo = client.post_as("/v1/buckets", &req).await?;
            println!(
                "bucket {name} created; give a key access with `grenier bucket allow {name} --key <key> --read --write`"
            );
        }
        BucketCmd::List(f) => {
            let v: api::BucketList = client.get_as("/v1/buckets").await?;
            if f.json {
                print_json(&v.buckets);
            } else {
                let mut rows = vec![vec!["NAME".to_string(), "ID".to_string()]];
                for b in v.buckets {
                    rows.push(vec![b.name, b.id]);
                }
                print!("{}", format_table(&rows));
            }
        }
        BucketCmd::Info { bucket, json } => {
            let v: api::BucketInfo = client
                .get_as(&format!("/v1/buckets/info?bucket={}", enc(bucket)))
                .await?;
            if *json {
                print_json(&v);
            } else {
                print!("{}", human_bucket(v));
            }
        }
        BucketCmd::Public { bucket, read, .. } => {
            let req = api::PublicRequest {
                bucket: Some(bucket.clone()),
                read: Some(*read),
            };
            let _: api::BucketInfo = client.post_as("/v1/buckets/public", &req).await?;
            if *read {
                println!("every object of bucket {bucket} can now be read without a signature");
            } else {
                println!("objects of bucket {bucket} are private again (except public-read ones)");
            }
        }
        BucketCmd::Website {
            bucket,
            allow,
            index_document,
            error_document,
            ..
        } => {
            let req = api::WebsiteRequest {
                bucket: Some(bucket.clone()),
                allow: Some(*allow),
                index_document: allow.then(|| index_document.clone()),
                error_document: error_document.clone(),
            };
            let info: api::BucketInfo = client.post_as("/v1/buckets/website", &req).await?;
            if *allow {
                println!(
                    "bucket {bucket} is served as a website (index document {index_document})"
                );
                if !info.public_read {
                    println!(
                        "only its public-read objects are served; to serve every object: \
                         grenier bucket public {bucket} --read"
                    );
                }
            } else {
                println!("bucket {bucket} is no longer served as a website");
            }
        }
        BucketCmd::Delete { bucket } => {
            let req = api::BucketRequest {
                bucket: Some(bucket.clone()),
            };
            let _: api::Deleted = client.post_as("/v1/buckets/delete", &req).await?;
            println!("bucket {bucket} deleted");
        }
        BucketCmd::Alias {
            bucket,
            alias,
            local,
        } => {
            let req = api::AliasRequest {
                bucket: Some(bucket.clone()),
                alias: Some(alias.clone()),
                key: local.clone(),
            };
            let _: api::BucketInfo = client.post_as("/v1/buckets/alias", &req).await?;
            match local {
                Some(k) => println!("key {k} now sees bucket {bucket} as {alias}"),
                None => println!("bucket {bucket} is now also named {alias}"),
            }
        }
        BucketCmd::Unalias { alias, local } => {
            let req = api::AliasRequest {
                bucket: None,
                alias: Some(alias.clone()),
                key: local.clone(),
            };
            let _: api::Unaliased = client.post_as("/v1/buckets/unalias", &req).await?;
            println!("name {alias} removed");
        }
        BucketCmd::Allow(r) | BucketCmd::Deny(r) => {
            if !(r.read || r.write || r.owner) {
                bail!("say which rights: --read, --write and/or --owner");
            }
            let path = if matches!(cmd, BucketCmd::Allow(_)) {
                "/v1/buckets/allow"
            } else {
                "/v1/buckets/deny"
            };
            let req = api::RightsRequest {
                bucket: Some(r.bucket.clone()),
                key: Some(r.key.clone()),
                read: Some(r.read),
                write: Some(r.write),
                owner: Some(r.owner),
            };
            let _: api::BucketInfo = client.post_as(path, &req).await?;
            println!("rights of key {} on bucket {} updated", r.key, r.bucket);
        }
    }
    Ok(())
}

/// `bucket info` for humans.
fn human_bucket(v: api::BucketInfo) -> String {
    let mut out = format!(
        "Bucket:   {}\nID:       {}\nObjects:  {}   Size: {}\nACL:      {}   Public read: {}\n",
        v.name.unwrap_or_default(),
        v.id,
        v.objects,
        format_size(v.bytes),
        v.acl,
        if v.public_read { "yes" } else { "no" }
    );
    if let Some(w) = &v.website {
        let or_none = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        out.push_str(&match &w.redirect_all {
            Some(to) => format!("Website:  redirects every request to {to}\n"),
            None => format!(
                "Website:  index {}   error document {}   routing rules {}\n",
                or_none(&w.index_document),
                or_none(&w.error_document),
                w.routing_rules
            ),
        });
    } else {
        out.push_str("Website:  no\n");
    }
    let mut rows = vec![
        ["KEY", "NAME", "READ", "WRITE", "OWNER"]
            .map(String::from)
            .to_vec(),
    ];
    for k in v.keys {
        rows.push(vec![k.id, k.name, yes(k.read), yes(k.write), yes(k.owner)]);
    }
    out.push_str(&format_table(&rows));
    out
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "" }.to_string()
}
