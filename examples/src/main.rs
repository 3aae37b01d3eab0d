//! `counters`: named counters kept durable by coord-engine.
//!
//! ```text
//! counters DATA_DIR add NAME DELTA   # prints the new value once it is durable
//! counters DATA_DIR get NAME
//! counters DATA_DIR list
//! ```

use std::process::ExitCode;

use coord_engine::{Engine, EngineConfig};
use coord_examples::{add_txn, Counters};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: counters DATA_DIR (add NAME DELTA | get NAME | list)";
    let Some((dir, command)) = args.split_first() else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let counters = Counters::default();
    let engine = match Engine::open(EngineConfig::new(dir), counters.clone()) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("counters: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match command {
        [op, name, delta] if op == "add" => match delta.parse::<i64>() {
            Ok(delta) => match engine.propose(|_| add_txn(name, delta)) {
                Ok(proposal) => match proposal.wait() {
                    Ok((zxid, Ok(value))) => {
                        println!("{name} = {value} (zxid {zxid})");
                        ExitCode::SUCCESS
                    }
                    Ok((_, Err(e))) => {
                        eprintln!("counters: {e:?}");
                        ExitCode::from(1)
                    }
                    Err(e) => {
                        eprintln!("counters: {e}");
                        ExitCode::from(1)
                    }
                },
                Err(e) => {
                    eprintln!("counters: {e:?}");
                    ExitCode::from(2)
                }
            },
            Err(_) => {
                eprintln!("counters: DELTA must be an integer");
                ExitCode::from(2)
            }
        },
        [op, name] if op == "get" => {
            println!("{name} = {}", counters.get(name));
            ExitCode::SUCCESS
        }
        [op] if op == "list" => {
            for (name, value) in counters.all() {
                println!("{name} = {value}");
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{usage}");
            ExitCode::from(2)
        }
    };
    engine.shutdown();
    code
}
