//! Micro-benchmarks of the per-message hot path: the strict DATA reader,
//! the decision (header scan + count + rules), the Bcc rewrite and one
//! split copy's rewrite, for the 1,494-address cancellation mail and
//! growing sizes.
//!
//! `cargo bench --bench core`; figures are in the README.

mod support;

use support::{mail, policy};

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};

use bccguard::message::headers;
use bccguard::policy::{self, DomainSet, Envelope};
use bccguard::rewrite::{self, Keep, KeepVisible, Prepared};
use bccguard::smtp::data::{DataLimits, DataReader, write_stuffed};

struct Internal<'a>(&'a DomainSet);

impl Keep for Internal<'_> {
    fn keep(&self, addr: &str) -> bool {
        self.0
            .contains(addr.rsplit_once('@').map_or("", |(_, d)| d))
    }
}

fn decide(c: &mut Criterion) {
    let p = policy();
    let mut g = c.benchmark_group("decide");
    for n in [10usize, 100, 1000, 1494, 10_000] {
        let msg = mail(n, 4096);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &msg, |b, msg| {
            b.iter(|| {
                policy::decide(
                    &p,
                    Envelope {
                        mail_from: "termine@example.org",
                        rcpt_to: &[],
                    },
                    black_box(msg),
                )
            })
        });
    }
    g.finish();
}

fn bcc_rewrite(c: &mut Criterion) {
    let p = policy();
    let mut g = c.benchmark_group("bcc_rewrite");
    for n in [10usize, 100, 1000, 1494, 10_000] {
        let msg = mail(n, 4096);
        let h = headers::scan(&msg, 16 << 20).expect("headers");
        let keep = Internal(&p.internal_domains);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &msg, |b, msg| {
            b.iter(|| rewrite::hide(black_box(msg), &h, &keep, "termine@example.org"))
        });
    }
    g.finish();
}

/// One copy of a split: the message prepared once (as the session does),
/// then the rewrite that shows one recipient its own address.
fn split_copy(c: &mut Criterion) {
    let p = policy();
    let mut g = c.benchmark_group("split_copy");
    for n in [100usize, 1000, 1494, 10_000] {
        let msg = mail(n, 4096);
        let h = headers::scan(&msg, 16 << 20).expect("headers");
        let prepared = Prepared::new(&msg, &h, &KeepVisible::new(&p, None));
        let own = format!("patient{}@mail{}.test", n / 2, (n / 2) % 37);
        g.bench_with_input(BenchmarkId::from_parameter(n), &own, |b, own| {
            b.iter(|| prepared.hide(Some(black_box(own)), "termine@example.org"))
        });
    }
    g.finish();
}

fn data_reader(c: &mut Criterion) {
    let mut g = c.benchmark_group("data_reader");
    for size in [10_000usize, 1_000_000, 50_000_000] {
        let msg = mail(8, size);
        let mut wire = Vec::new();
        write_stuffed(&[&msg], &mut wire);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        if size >= 50_000_000 {
            g.sample_size(10);
        }
        g.bench_with_input(BenchmarkId::from_parameter(size), &wire, |b, wire| {
            let mut out = Vec::with_capacity(wire.len());
            b.iter(|| {
                out.clear();
                let mut r = DataReader::new(DataLimits {
                    max_message_size: 64 << 20,
                    max_line_length: 998,
                });
                let fed = r.feed(black_box(wire), &mut out);
                assert!(fed.done && r.error().is_none());
            })
        });
        g.bench_with_input(BenchmarkId::new("stuff", size), &msg, |b, msg| {
            let mut out = Vec::with_capacity(msg.len() + 1024);
            b.iter(|| {
                out.clear();
                write_stuffed(&[black_box(msg)], &mut out);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decide, bcc_rewrite, split_copy, data_reader);
criterion_main!(benches);
