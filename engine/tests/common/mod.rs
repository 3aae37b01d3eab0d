//! The toy key-value machine the engine's integration tests replicate.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use coord_engine::{RestoreError, Snapshot, StateMachine, Zxid};

/// A key-value map; a txn is `key=value`, its output the key's previous value. The map and an
/// apply counter are shared with the test so it can look inside after the engine owns the
/// machine.
#[derive(Clone, Default)]
pub struct Kv {
    pub map: Arc<Mutex<BTreeMap<String, String>>>,
    applied: Arc<AtomicU64>,
}

pub struct KvSnapshot(pub BTreeMap<String, String>);

impl Snapshot for KvSnapshot {
    fn write_to(&self, writer: &mut dyn Write) -> io::Result<()> {
        for (key, value) in &self.0 {
            writeln!(writer, "{key}={value}")?;
        }
        Ok(())
    }
}

impl StateMachine for Kv {
    type Output = Option<String>;
    type Snapshot = KvSnapshot;

    fn apply(&mut self, _zxid: Zxid, txn: &[u8]) -> Option<String> {
        self.applied.fetch_add(1, Ordering::SeqCst);
        let txn = String::from_utf8_lossy(txn);
        let (key, value) = txn.split_once('=')?;
        self.map
            .lock()
            .unwrap()
            .insert(key.to_string(), value.to_string())
    }

    fn snapshot(&self) -> KvSnapshot {
        KvSnapshot(self.map.lock().unwrap().clone())
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), RestoreError> {
        let mut text = String::new();
        reader.read_to_string(&mut text)?;
        let mut map = BTreeMap::new();
        for line in text.lines() {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| RestoreError::Malformed(format!("line {line:?}")))?;
            map.insert(key.to_string(), value.to_string());
        }
        *self.map.lock().unwrap() = map;
        Ok(())
    }
}

impl Kv {
    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }
}
