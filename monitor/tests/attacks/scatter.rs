//! Buffers in several host pieces (`GuestMemory::host_pieces`) against the
//! boundary, with `programs/attack_scatter.c`: a buffer of 1000 separate
//! commits, and a readv of 1024 straddling iovecs (2048 host pieces, more
//! than IOV_MAX), get bounded, sane (short) counts; a length near SIZE_MAX over a straddle is refused (137); another
//! thread unmapping the middle page during straddling reads and writes
//! ends the program at worst, never the monitor; on both backends.

use std::sync::OnceLock;

use cabin_monitor::RunConfig;

use super::common::{self, Backend};

fn image() -> Option<&'static [u8]> {
    static IMAGE: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let t = tempfile::tempdir().expect("tempdir");
            common::image("attack_scatter", t.path())
        })
        .as_deref()
}

fn run(b: Backend, mode: &str) -> Option<cabin_monitor::RunOutcome> {
    let img = image()?;
    let cfg =
        RunConfig { args: vec!["attack_scatter".into(), mode.into()], quiet: true, ..RunConfig::default() };
    Some(b.run(img, &cfg).expect("the monitor survives"))
}

fn more_pieces_than_iov_max_get_a_bounded_short_count(b: Backend) {
    if let Some(o) = run(b, "many") {
        assert_eq!(o.exit_code, 0, "a count was out of range (the program printed which): {:?}", o.reason);
    }
}

fn a_length_near_size_max_over_a_straddle_is_refused(b: Backend) {
    if let Some(o) = run(b, "huge") {
        assert_eq!(o.exit_code, 137, "{:?}", o.reason);
    }
}

fn unmapping_a_piece_during_the_call_ends_the_program_at_worst(b: Backend) {
    if let Some(o) = run(b, "race") {
        assert!(o.exit_code == 0 || o.exit_code == 137, "exit {} {:?}", o.exit_code, o.reason);
    }
}

on_both_backends!(
    more_pieces_than_iov_max_get_a_bounded_short_count,
    a_length_near_size_max_over_a_straddle_is_refused,
    unmapping_a_piece_during_the_call_ends_the_program_at_worst,
);
