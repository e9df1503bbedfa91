//! `grenier key ...` and `grenier bucket ...`.

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::client::AdminClient;
use super::table::format_table;
use super::{JsonFlag, enc, print_json};
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
    /// Delete an empty bucket.
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
            let v = client.post("/v1/keys", json!({ "name": name })).await?;
            show_key(&v, *json, true);
        }
        KeyCmd::List(f) => {
            let v = client.get("/v1/keys").await?;
            if f.json {
                print_json(&v["keys"]);
            } else {
                let mut rows = vec![vec!["ID".to_string(), "NAME".to_string()]];
                for k in v["keys"].as_array().into_iter().flatten() {
                    rows.push(vec![s(&k["id"]), s(&k["name"])]);
                }
                print!("{}", format_table(&rows));
            }
        }
        KeyCmd::Info {
            key,
            show_secret,
            json,
        } => {
            let v = client
                .get(&format!(
                    "/v1/keys/info?key={}&show_secret={show_secret}",
                    enc(key)
                ))
                .await?;
            show_key(&v, *json, *show_secret);
        }
        KeyCmd::Delete { key } => {
            client
                .post("/v1/keys/delete", json!({ "key": key }))
                .await?;
            println!("key {key} deleted");
        }
        KeyCmd::Import {
            id,
            secret,
            name,
            json,
        } => {
            let v = client
                .post(
                    "/v1/keys/import",
                    json!({"id": id, "secret": secret, "name": name.as_deref().unwrap_or(id)}),
                )
                .await?;
            show_key(&v, *json, false);
        }
        KeyCmd::Allow { key, .. } | KeyCmd::Deny { key, .. } => {
            let allow = matches!(cmd, KeyCmd::Allow { .. });
            client
                .post(
                    "/v1/keys/allow",
                    json!({"key": key, "create_bucket": allow}),
                )
                .await?;
            println!(
                "key {key} {} create buckets",
                if allow { "may now" } else { "may no longer" }
            );
        }
    }
    Ok(())
}

fn show_key(v: &Value, json: bool, secret: bool) {
    if json {
        let mut out = v.clone();
        if !secret && let Some(o) = out.as_object_mut() {
            o.remove("secret");
        }
        print_json(&out);
        return;
    }
    println!("Key ID:      {}", s(&v["id"]));
    println!("Name:        {}", s(&v["name"]));
    if secret && let Some(sec) = v["secret"].as_str() {
        println!("Secret key:  {sec}");
    }
    println!(
        "Can create buckets: {}",
        if v["allow_create_bucket"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        }
    );
    let buckets = v["buckets"].as_array().cloned().unwrap_or_default();
    if !buckets.is_empty() {
        let mut rows = vec![
            ["BUCKET", "READ", "WRITE", "OWNER"]
                .map(String::from)
                .to_vec(),
        ];
        for b in &buckets {
            rows.push(vec![
                s(&b["name"]),
                yes(&b["read"]),
                yes(&b["write"]),
                yes(&b["owner"]),
            ]);
        }
        print!("{}", format_table(&rows));
    }
}

pub async fn bucket(client: &AdminClient, cmd: &BucketCmd) -> Result<()> {
    match cmd {
        BucketCmd::Create { name } => {
            client.post("/v1/buckets", json!({ "name": name })).await?;
            println!(
                "bucket {name} created; give a key access with `grenier bucket allow {name} --key <key> --read --write`"
            );
        }
        BucketCmd::List(f) => {
            let v = client.get("/v1/buckets").await?;
            if f.json {
                print_json(&v["buckets"]);
            } else {
                let mut rows = vec![vec!["NAME".to_string(), "ID".to_string()]];
                for b in v["buckets"].as_array().into_iter().flatten() {
                    rows.push(vec![s(&b["name"]), s(&b["id"])]);
                }
                print!("{}", format_table(&rows));
            }
        }
        BucketCmd::Info { bucket, json } => {
            let v = client
                .get(&format!("/v1/buckets/info?bucket={}", enc(bucket)))
                .await?;
            if *json {
                print_json(&v);
            } else {
                println!("Bucket:   {}", s(&v["name"]));
                println!("ID:       {}", s(&v["id"]));
                println!(
                    "Objects:  {}   Size: {}",
                    v["objects"],
                    format_size(v["bytes"].as_u64().unwrap_or(0))
                );
                let mut rows = vec![
                    ["KEY", "NAME", "READ", "WRITE", "OWNER"]
                        .map(String::from)
                        .to_vec(),
                ];
                for k in v["keys"].as_array().into_iter().flatten() {
                    rows.push(vec![
                        s(&k["id"]),
                        s(&k["name"]),
                        yes(&k["read"]),
                        yes(&k["write"]),
                        yes(&k["owner"]),
                    ]);
                }
                print!("{}", format_table(&rows));
            }
        }
        BucketCmd::Delete { bucket } => {
            client
                .post("/v1/buckets/delete", json!({ "bucket": bucket }))
                .await?;
            println!("bucket {bucket} deleted");
        }
        BucketCmd::Alias {
            bucket,
            alias,
            local,
        } => {
            client
                .post(
                    "/v1/buckets/alias",
                    json!({"bucket": bucket, "alias": alias, "key": local}),
                )
                .await?;
            match local {
                Some(k) => println!("key {k} now sees bucket {bucket} as {alias}"),
                None => println!("bucket {bucket} is now also named {alias}"),
            }
        }
        BucketCmd::Unalias { alias, local } => {
            client
                .post("/v1/buckets/unalias", json!({"alias": alias, "key": local}))
                .await?;
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
            client
                .post(
                    path,
                    json!({"bucket": r.bucket, "key": r.key, "read": r.read, "write": r.write, "owner": r.owner}),
                )
                .await?;
            println!("rights of key {} on bucket {} updated", r.key, r.bucket);
        }
    }
    Ok(())
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

fn yes(v: &Value) -> String {
    if v.as_bool() == Some(true) { "yes" } else { "" }.to_string()
}
