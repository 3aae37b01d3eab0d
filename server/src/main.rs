use std::process::ExitCode;

use clap::Parser;
use coord::config::Subcommand;
use coord::dev::{self, DevOptions};
use coord::{Config, Flags, Server};

fn main() -> ExitCode {
    let mut flags = Flags::parse();
    match flags.command.take() {
        Some(Subcommand::Dev {
            servers,
            dir,
            tick_ms,
            any_ports,
            transport,
            certs,
        }) => {
            let transport = match transport.as_str() {
                "tcp" => dev::DevTransport::Tcp,
                "quic" => dev::DevTransport::Quic { certs },
                other => {
                    eprintln!(
                        "coord dev: invalid --transport: {other:?} is not \"tcp\" or \"quic\""
                    );
                    return ExitCode::from(2);
                }
            };
            return run_dev(DevOptions {
                servers,
                dir,
                tick_ms,
                any_ports,
                transport,
            });
        }
        Some(Subcommand::Certs {
            dir,
            ensemble,
            members,
            clients,
            hosts,
        }) => return run_certs(dir, ensemble, members, clients, hosts),
        None => {}
    }
    let config = match Config::load(flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("coord: {e}");
            return ExitCode::from(2);
        }
    };
    // Config::load checked that the filter parses.
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("coord")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("coord: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let server = match Server::start(config).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("coord: {e}");
                return ExitCode::from(e.exit_code() as u8);
            }
        };
        server.run(shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

#[cfg(feature = "quic")]
fn run_certs(
    dir: std::path::PathBuf,
    ensemble: String,
    members: u64,
    clients: Vec<String>,
    hosts: Vec<String>,
) -> ExitCode {
    let options = coord::certs::CertsOptions {
        dir,
        ensemble,
        members,
        clients,
        hosts,
    };
    match coord::certs::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coord certs: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(not(feature = "quic"))]
fn run_certs(_: std::path::PathBuf, _: String, _: u64, _: Vec<String>, _: Vec<String>) -> ExitCode {
    eprintln!("coord certs: this coord was built without QUIC (the `quic` feature)");
    ExitCode::from(2)
}

fn run_dev(options: DevOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("coord: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dev::run(options, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ dev::DevError::Servers(_)) => {
            eprintln!("coord dev: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("coord dev: {e}");
            ExitCode::from(1)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
