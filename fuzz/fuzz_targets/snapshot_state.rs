//! A snapshot's `state.json`, as `vm.restore` / `--restore` read it from a directory anyone
//! may have written: arbitrary bytes (and an arbitrary memory file length) through
//! `State::parse`. Nothing may panic; a refusal is an error naming the snapshot; an accepted
//! state's parts decode, its memory ranges fit the file, and it writes back to JSON that
//! parses to the same state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::snapshot::State;

fuzz_target!(|data: &[u8]| {
    let (len, json) = match data.split_first_chunk::<8>() {
        Some((l, rest)) => (u64::from_le_bytes(*l) >> 8, rest),
        None => (0, data),
    };
    match State::parse(json, len, "/fuzz/state.json") {
        Ok(state) => {
            for p in state.vcpus.iter().chain([&state.vm]) {
                p.to_state().expect("checked by parse");
            }
            for r in &state.memory {
                assert!(r.offset.checked_add(r.size).is_some_and(|e| e <= len));
            }
            let again = serde_json::to_vec(&state).expect("serializable");
            assert_eq!(State::parse(&again, len, "/fuzz/again").expect("round trip"), state);
        }
        Err(e) => assert!(e.to_string().contains("/fuzz/state.json")),
    }
});
