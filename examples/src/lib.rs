//! Named counters: a second state machine replicated by coord-engine, to show that the engine
//! is generic (it knows nothing of znodes) and how a Rust program brings its own machine.
//!
//! A txn is `name=delta` in UTF-8. Applying adds `delta` to the counter `name` (saturating) and
//! yields its new value. Everything a txn needs is in its bytes, so applying is deterministic on
//! every replica. Snapshots are `name=value` lines.
//!
//! ```
//! use coord_engine::{Engine, EngineConfig};
//! use coord_examples::{add_txn, Counters};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let engine = Engine::open(EngineConfig::new(dir.path()), Counters::default()).unwrap();
//! let proposal = engine.propose(|_zxid| add_txn("apples", 3)).unwrap();
//! let (_zxid, value) = proposal.wait().unwrap();
//! assert_eq!(value, Ok(3));
//! ```

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, PoisonError};

use coord_engine::{RestoreError, Snapshot, StateMachine, Zxid};

/// Counter names are short printable words, so that a txn and a snapshot line parse unambiguously.
pub const NAME_BYTES_MAX: usize = 64;

/// Why a txn or a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterError {
    BadName,
    MalformedTxn,
}

/// Encodes "add `delta` to `name`", checking the name on the write path (not at apply).
pub fn add_txn(name: &str, delta: i64) -> Result<Vec<u8>, CounterError> {
    let valid = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(CounterError::BadName);
    }
    Ok(format!("{name}={delta}").into_bytes())
}

/// The counters, shared with readers: the engine applies, anyone may read.
#[derive(Clone, Default)]
pub struct Counters {
    values: Arc<Mutex<BTreeMap<String, i64>>>,
}

impl Counters {
    /// The current value of `name` (0 if never added to).
    pub fn get(&self, name: &str) -> i64 {
        self.lock().get(name).copied().unwrap_or(0)
    }

    /// Every counter and its value.
    pub fn all(&self) -> BTreeMap<String, i64> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, i64>> {
        // A panic while holding the lock cannot leave the map half-updated: inserts are atomic.
        self.values.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn parse(txn: &[u8]) -> Option<(&str, i64)> {
    let text = std::str::from_utf8(txn).ok()?;
    let (name, delta) = text.split_once('=')?;
    Some((name, delta.parse().ok()?))
}

impl StateMachine for Counters {
    /// The counter's new value, or why the txn could not be applied.
    type Output = Result<i64, CounterError>;
    type Snapshot = CountersSnapshot;

    fn apply(&mut self, _zxid: Zxid, txn: &[u8]) -> Self::Output {
        let (name, delta) = parse(txn).ok_or(CounterError::MalformedTxn)?;
        let mut values = self.lock();
        let value = values.entry(name.to_owned()).or_insert(0);
        *value = value.saturating_add(delta);
        Ok(*value)
    }

    fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot(self.all())
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), RestoreError> {
        let mut text = String::new();
        reader.read_to_string(&mut text)?;
        let mut values = BTreeMap::new();
        for line in text.lines() {
            let (name, value) = parse(line.as_bytes())
                .ok_or_else(|| RestoreError::Malformed(format!("snapshot line {line:?}")))?;
            values.insert(name.to_owned(), value);
        }
        *self.lock() = values;
        Ok(())
    }
}

/// A frozen copy of the counters, written out on the engine's snapshot thread.
pub struct CountersSnapshot(BTreeMap<String, i64>);

impl Snapshot for CountersSnapshot {
    fn write_to(&self, writer: &mut dyn Write) -> io::Result<()> {
        for (name, value) in &self.0 {
            writeln!(writer, "{name}={value}")?;
        }
        Ok(())
    }
}
