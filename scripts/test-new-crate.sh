#!/usr/bin/env bash
# A newcomer's first use of the Rust client: a new crate, outside this workspace, that depends
# on coord-client by path, builds, and talks to a coord server.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cargo new -q --bin "$scratch/hello-coord"
cd "$scratch/hello-coord"
cat >>Cargo.toml <<TOML
coord-client = { path = "$repo/client" }
tokio = { version = "1", features = ["rt-multi-thread", "macros"] }
TOML
cat >src/main.rs <<'RUST'
use std::time::Duration;

use coord_client::{Acl, Client, CreateMode};

#[tokio::main]
async fn main() -> Result<(), coord_client::Error> {
    let hosts = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:2181".into());
    let client = Client::connect(&hosts, Duration::from_secs(10)).await?;
    client.create("/from-a-new-crate", b"hi", &Acl::open_unsafe(), CreateMode::Ephemeral).await?;
    let (data, _) = client.get_data("/from-a-new-crate").await?;
    println!("{}", String::from_utf8_lossy(&data));
    client.close().await
}
RUST
# The workspace's lock file as a start: the same versions, already built.
cp "$repo/Cargo.lock" .
CARGO_TARGET_DIR="$repo/target" cargo build -q
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$repo/target/debug/coord" --client-addr "127.0.0.1:$port" --data-dir "$scratch/data" 2>"$scratch/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$scratch"' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
out="$(CARGO_TARGET_DIR="$repo/target" cargo run -q -- "127.0.0.1:$port")"
[ "$out" = "hi" ] || { echo "unexpected output: $out" >&2; exit 1; }
echo "a new crate used coord-client: ok"
