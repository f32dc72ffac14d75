//! A fixed workload for profilers (callgrind, perf): runs one hot-path
//! operation on the 1,494-address cancellation mail (or `n` addresses) a
//! given number of times, with nothing else in the process worth seeing.
//!
//! ```sh
//! cargo build --release --example hotpath
//! valgrind --tool=callgrind --toggle-collect='*hotpath::run*' \
//!     target/release/examples/hotpath decide 1494 200
//! ```
//! Operations: `decide`, `office` (the decision with 100 rules and 1,000
//! approved groups, benches' `decide_office`), `hide`, `split` (one copy's rewrite of a prepared
//! message, as a split does per recipient), `read` (the DATA reader over an
//! `n`-byte message).

use std::hint::black_box;

#[path = "../benches/support/mod.rs"]
mod support;

use support::{mail, office_groups, office_policy, policy};

use bccguard::message::headers;
use bccguard::policy::{self, Envelope, Policy};
use bccguard::rewrite::{self, KeepVisible, Prepared};
use bccguard::smtp::data::{DataLimits, DataReader, write_stuffed};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let op = args.get(1).map_or("decide", String::as_str);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1494);
    let iters: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    let p = if op == "office" {
        office_policy()
    } else {
        policy()
    };
    let msg = if op == "read" {
        mail(8, n)
    } else {
        mail(n, 4096)
    };
    let iters32 = u32::try_from(iters.max(1)).unwrap_or(u32::MAX);
    let (t, cpu) = (std::time::Instant::now(), on_cpu());
    let work = run(op, &p, &msg, n, iters);
    let wall = t.elapsed() / iters32;
    let cpu = on_cpu().saturating_sub(cpu) / iters32;
    println!("{op} n={n}: {cpu:?} on CPU, {wall:?} wall per iteration (checksum {work})");
}

/// Time this thread spent on a CPU (Linux `/proc/thread-self/schedstat`),
/// so a figure taken on a shared machine does not count time others ran.
fn on_cpu() -> std::time::Duration {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    std::time::Duration::from_nanos(ns)
}

/// The measured loop (callgrind's `--toggle-collect` target).
#[inline(never)]
fn run(op: &str, p: &Policy, msg: &[u8], n: usize, iters: usize) -> usize {
    let env = Envelope {
        mail_from: "termine@example.org",
        rcpt_to: &[],
    };
    let mut work = 0;
    match op {
        "decide" => {
            for _ in 0..iters {
                let d = policy::decide(p, env, black_box(msg)).expect("decide");
                work += d.visible.external.len();
            }
        }
        "office" => {
            let groups = office_groups(n, false);
            let approved = policy::Approved {
                groups: &groups,
                now: 0,
            };
            for _ in 0..iters {
                let d =
                    policy::decide_with(p, env, black_box(msg), Some(approved)).expect("decide");
                work += d.visible.external.len();
            }
        }
        "hide" => {
            let h = headers::scan(msg, p.max_header_size).expect("headers");
            let keep = KeepVisible::new(p, None);
            for _ in 0..iters {
                work += rewrite::hide(black_box(msg), &h, &keep, "termine@example.org")
                    .head
                    .len();
            }
        }
        "split" => {
            // As a split does: prepare once, then one rewrite per copy.
            let h = headers::scan(msg, p.max_header_size).expect("headers");
            let prepared = Prepared::new(black_box(msg), &h, &KeepVisible::new(p, None));
            for i in 0..iters {
                let own = format!("patient{}@mail{}.test", i % n, (i % n) % 37);
                work += prepared.hide(Some(&own), "termine@example.org").head.len();
            }
        }
        "read" => {
            let mut wire = Vec::new();
            write_stuffed(&[msg], &mut wire);
            let mut out = Vec::with_capacity(wire.len());
            for _ in 0..iters {
                out.clear();
                let mut r = DataReader::new(DataLimits {
                    max_message_size: 64 << 20,
                    max_line_length: 998,
                });
                work += r.feed(black_box(&wire), &mut out).consumed;
            }
        }
        other => panic!("unknown operation {other:?}: decide, office, hide, split, read"),
    }
    work
}
