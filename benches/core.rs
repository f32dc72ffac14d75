//! Micro-benchmarks of the per-message hot path: the strict DATA reader,
//! the decision (header scan + count + rules), the decision with 100 rules
//! and 1,000 approved groups, the Bcc rewrite and one split copy's rewrite,
//! for the 1,494-address cancellation mail and growing sizes.
//!
//! `cargo bench --bench core`; figures are in docs/performance.md.

mod support;

use support::{mail, office_groups, office_policy, policy};

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};

use bccguard::message::headers;
use bccguard::policy::{self, Approved, DomainSet, Envelope};
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

/// Issue 18's goal: the 1,494-address mail decided under 200 us with a
/// domain threshold, 100 rules (recipient patterns included) and 1,000
/// approved groups; held by none of them, and passed by a group that holds
/// every address (the subset test's longest path).
fn decide_office(c: &mut Criterion) {
    let p = office_policy();
    let n = 1494;
    let msg = mail(n, 4096);
    let mut g = c.benchmark_group("decide_office");
    g.throughput(Throughput::Elements(n as u64));
    for (name, covering) in [
        ("100_rules_1000_groups", false),
        ("covered_by_a_group", true),
    ] {
        let groups = office_groups(n, covering);
        let approved = Approved {
            groups: &groups,
            now: 0,
        };
        let env = Envelope {
            mail_from: "termine@example.org",
            rcpt_to: &[],
        };
        let d = policy::decide_with(&p, env, &msg, Some(approved)).expect("decide");
        assert_eq!(d.rule.as_deref(), Some("appointments"));
        assert_eq!(d.group.is_some(), covering, "{name}");
        g.bench_with_input(BenchmarkId::from_parameter(name), &msg, |b, msg| {
            b.iter(|| policy::decide_with(&p, env, black_box(msg), Some(approved)))
        });
    }
    g.finish();
}

/// The shapes issue 14 reads beyond plain mailboxes, 1,494 addresses each:
/// Outlook's quoted-address display names (`'p@x' <p@x>`: the general
/// parser and a token scan per mailbox), the list as one base64 encoded
/// word (decoded, then tokens), space-separated (one unparseable element),
/// and the list forwarded as an attached message/rfc822 to one external
/// recipient (the MIME walk, then the attached header).
fn decide_visible(c: &mut Criterion) {
    use base64::Engine as _;
    let p = policy();
    let n = 1494;
    let addrs: Vec<String> = (0..n)
        .map(|i| format!("patient{i}@mail{}.test", i % 37))
        .collect();
    let head = "From: Impfzentrum <termine@example.org>\r\n";
    let tail = "Subject: Terminabsage\r\n\r\nIhr Termin muss leider abgesagt werden.\r\n";
    let named: Vec<String> = addrs.iter().map(|a| format!("'{a}' <{a}>")).collect();
    let word = base64::engine::general_purpose::STANDARD.encode(addrs.join(", "));
    let shapes = [
        (
            "quoted_names",
            format!("{head}To: {}\r\n{tail}", named.join(",\r\n ")),
        ),
        (
            "encoded_word",
            format!("{head}To: =?utf-8?b?{word}?=\r\n{tail}"),
        ),
        (
            "space_separated",
            format!("{head}To: {}\r\n{tail}", addrs.join("\r\n ")),
        ),
        (
            "attached",
            format!(
                "{head}To: partner@other.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
                 --b\r\nContent-Type: text/plain\r\n\r\nFYI\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n\
                 {}--b--\r\n",
                String::from_utf8(mail(n, 4096)).expect("utf-8")
            ),
        ),
    ];
    let rcpts = ["partner@other.test".to_string()];
    let mut g = c.benchmark_group("decide_visible");
    g.throughput(Throughput::Elements(n as u64));
    for (name, msg) in &shapes {
        let d = policy::decide(
            &p,
            Envelope {
                mail_from: "termine@example.org",
                rcpt_to: &rcpts,
            },
            msg.as_bytes(),
        )
        .expect("decide");
        assert!(
            d.visible.external.len() >= n,
            "{name}: {}",
            d.visible.external.len()
        );
        g.bench_with_input(BenchmarkId::from_parameter(name), msg, |b, msg| {
            b.iter(|| {
                policy::decide(
                    &p,
                    Envelope {
                        mail_from: "termine@example.org",
                        rcpt_to: &rcpts,
                    },
                    black_box(msg.as_bytes()),
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

criterion_group!(
    benches,
    decide,
    decide_office,
    decide_visible,
    bcc_rewrite,
    split_copy,
    data_reader
);
criterion_main!(benches);
