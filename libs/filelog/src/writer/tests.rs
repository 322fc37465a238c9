//! Durability, order and crash recovery of the file log.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::*;
use crate::{recover, truncate_to};

type Seen = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

fn sink(seen: &Seen) -> Sink {
    let seen = seen.clone();
    Box::new(move |pos, bytes| seen.lock().unwrap().push((pos.offset, bytes.to_vec())))
}

#[tokio::test]
async fn appends_are_sunk_in_order_and_replayed_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let seen: Seen = Arc::default();
    let log = Arc::new(FileLog::open(&path, FileLogOptions::default(), sink(&seen)).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50u8 {
        let log = log.clone();
        tasks.spawn(async move { log.append_bytes(vec![i; 10]).await.unwrap() });
    }
    let positions = tasks.join_all().await;
    let mut offsets: Vec<u64> = positions.iter().map(|p| p.offset).collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (0..50).collect::<Vec<_>>());
    let live: Vec<u64> = seen.lock().unwrap().iter().map(|(o, _)| *o).collect();
    assert_eq!(live, (0..50).collect::<Vec<_>>(), "sink sees log order");
    drop(log);

    let replayed: Seen = Arc::default();
    let log = FileLog::open(&path, FileLogOptions::default(), sink(&replayed)).unwrap();
    assert_eq!(*replayed.lock().unwrap(), *seen.lock().unwrap());
    let pos = log.append_bytes(b"next".to_vec()).await.unwrap();
    assert_eq!(pos.offset, 50);
}

#[tokio::test]
async fn torn_tail_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let log = FileLog::open(&path, FileLogOptions::default(), Box::new(|_, _| {})).unwrap();
    log.append_bytes(b"one".to_vec()).await.unwrap();
    log.append_bytes(b"two".to_vec()).await.unwrap();
    drop(log);
    let good_len = std::fs::metadata(&path).unwrap().len();
    // A crash in the middle of the third record: a header and half a payload.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&[20, 0, 0, 0, 1, 2, 3, 4, b'x', b'y']).unwrap();
    drop(f);

    let recovered = recover(&path).unwrap();
    assert_eq!(recovered.records, vec![b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(recovered.torn_bytes, 10);

    let seen: Seen = Arc::default();
    let log = FileLog::open(&path, FileLogOptions::default(), sink(&seen)).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    assert_eq!(log.append_bytes(b"three".to_vec()).await.unwrap().offset, 2);
    drop(log);
    let all = recover(&path).unwrap();
    assert_eq!(all.records.len(), 3);
    assert_eq!(all.torn_bytes, 0);
}

#[tokio::test]
async fn a_bad_checksum_on_the_last_record_is_a_torn_tail_but_earlier_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let log = FileLog::open(&path, FileLogOptions { fsync: false }, Box::new(|_, _| {})).unwrap();
    log.append_bytes(b"first".to_vec()).await.unwrap();
    log.append_bytes(b"second".to_vec()).await.unwrap();
    drop(log);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(recover(&path).unwrap().records, vec![b"first".to_vec()]);

    bytes[last] ^= 0xff;
    bytes[8] ^= 0xff; // inside the first record's payload
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        recover(&path),
        Err(FrameError::Corrupt { index: 0, .. })
    ));
    assert!(FileLog::open(&path, FileLogOptions::default(), Box::new(|_, _| {})).is_err());
}

/// Three records, fsync off; returns the file's bytes.
async fn three_records(path: &std::path::Path) -> Vec<u8> {
    let log = FileLog::open(path, FileLogOptions { fsync: false }, Box::new(|_, _| {})).unwrap();
    for r in [&b"first"[..], b"second", b"third"] {
        log.append_bytes(r.to_vec()).await.unwrap();
    }
    drop(log);
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn a_damaged_length_in_the_middle_refuses_to_start_rather_than_drop_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let mut bytes = three_records(&path).await;
    let second = 8 + b"first".len();
    bytes[second + 3] = 0x7f; // the second record's length now runs past the end of the file
    std::fs::write(&path, &bytes).unwrap();
    let err = recover(&path).unwrap_err();
    assert!(
        matches!(err, FrameError::Corrupt { at, index: 1, .. } if at == second as u64),
        "{err}"
    );
    assert!(
        err.to_string().contains("tokend log repair --to 1"),
        "{err}"
    );
    assert!(FileLog::open(&path, FileLogOptions::default(), Box::new(|_, _| {})).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");

    // The operator's repair keeps the intact prefix; the log opens again.
    let dropped = truncate_to(&path, 1).unwrap();
    assert_eq!(dropped as usize, bytes.len() - second);
    assert!(
        truncate_to(&path, 2).is_err(),
        "cannot keep what is not intact"
    );
    assert_eq!(recover(&path).unwrap().records, vec![b"first".to_vec()]);
}

#[tokio::test]
async fn a_zero_filled_tail_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.log");
    let mut bytes = three_records(&path).await;
    let len = bytes.len();
    bytes.extend(std::iter::repeat_n(0u8, 4096)); // what a crash can leave behind
    std::fs::write(&path, &bytes).unwrap();
    let recovered = recover(&path).unwrap();
    assert_eq!(recovered.records.len(), 3);
    assert_eq!(recovered.valid_len as usize, len);
    assert_eq!(recovered.torn_bytes, 4096);
}
