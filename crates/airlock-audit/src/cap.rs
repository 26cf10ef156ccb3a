//! The record's cap on text fields. A guest controls paths, hosts, argv and more; a value
//! longer than [`FIELD_CAP`] is cut to its first bytes and the record says so ([`Cut`]: the
//! field, its full length and SHA-256), so a long value is never a reason to drop a record and
//! the full value can still be matched against a copy of it. Monitor rules see the full value:
//! they run before the sink applies the cap.

use crate::event::{Cut, Event, sha256_hex};

/// Longest text field kept whole in a record, in bytes.
pub const FIELD_CAP: usize = 4096;

/// Cuts every text field of `event` longer than `cap` bytes (at a character boundary) and
/// lists each in `event.cut`.
pub fn cap_fields(event: &mut Event, cap: usize) {
    let mut c = Cutter {
        cap,
        cuts: Vec::new(),
        before: std::mem::take(&mut event.cut),
    };
    c.opt("rule", &mut event.rule);
    c.opt("reason", &mut event.reason);
    c.opt("detail", &mut event.detail);
    if let Some(f) = &mut event.fs {
        c.one("fs.op", &mut f.op);
        c.one("fs.path", &mut f.path);
        c.opt("fs.to", &mut f.to);
        c.opt("fs.mount", &mut f.mount);
    }
    if let Some(n) = &mut event.net {
        c.opt("net.host", &mut n.host);
        c.opt("net.ip", &mut n.ip);
        c.opt("net.method", &mut n.method);
        c.opt("net.path", &mut n.path);
        c.opt("net.credential", &mut n.credential);
    }
    if let Some(p) = &mut event.proc {
        for (i, a) in p.argv.iter_mut().enumerate() {
            if a.len() > cap {
                c.one(&format!("proc.argv[{i}]"), a);
            }
        }
        c.opt("proc.cwd", &mut p.cwd);
    }
    event.cut = c.before;
    event.cut.extend(c.cuts);
}

/// Cuts `s` to at most `cap` bytes (at a character boundary) when it is longer, returning
/// what was cut; for producers that must bound a field before it reaches the recorder (a
/// gateway's event line), so the record still names the full length and hash.
pub fn cut_text(field: &str, s: &mut String, cap: usize) -> Option<Cut> {
    if s.len() <= cap {
        return None;
    }
    let cut = Cut {
        field: field.to_owned(),
        len: s.len() as u64,
        sha256: sha256_hex(s.as_bytes()),
    };
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    Some(cut)
}

struct Cutter {
    cap: usize,
    cuts: Vec<Cut>,
    /// Cuts made before (by a gateway): their length and hash are the full value's.
    before: Vec<Cut>,
}

impl Cutter {
    fn one(&mut self, field: &str, s: &mut String) {
        if let Some(cut) = cut_text(field, s, self.cap)
            && !self.before.iter().any(|c| c.field == field)
        {
            self.cuts.push(cut);
        }
    }

    fn opt(&mut self, field: &str, s: &mut Option<String>) {
        if let Some(s) = s {
            self.one(field, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{NetInfo, ProcInfo, Source, kind};

    #[test]
    fn long_fields_are_cut_with_their_length_and_hash() {
        let path = format!("/{}", "é".repeat(3000));
        let mut e = Event::new(Source::Host, kind::NET_HTTP)
            .with_net(NetInfo {
                host: Some("example.com".into()),
                path: Some(path.clone()),
                ..NetInfo::default()
            })
            .with_proc(ProcInfo {
                argv: vec!["curl".into(), "x".repeat(5000)],
                ..ProcInfo::default()
            });
        cap_fields(&mut e, FIELD_CAP);
        let kept = e.net.as_ref().and_then(|n| n.path.clone()).unwrap();
        assert!(kept.len() <= FIELD_CAP && path.starts_with(&kept));
        assert_eq!(kept.len(), FIELD_CAP - 1, "cut at a character boundary");
        assert_eq!(e.net.as_ref().unwrap().host.as_deref(), Some("example.com"));
        assert_eq!(e.proc.as_ref().unwrap().argv[1].len(), FIELD_CAP);
        assert_eq!(
            e.cut,
            [
                Cut {
                    field: "net.path".into(),
                    len: path.len() as u64,
                    sha256: sha256_hex(path.as_bytes()),
                },
                Cut {
                    field: "proc.argv[1]".into(),
                    len: 5000,
                    sha256: sha256_hex("x".repeat(5000).as_bytes()),
                },
            ]
        );
        // A record with cuts round-trips and verifies like any other.
        let (line, _) = crate::event::encode(
            1,
            crate::Timestamp::from_millis(1),
            "sb",
            &e,
            crate::ZERO_HASH,
        );
        let r = crate::Record::parse_checked(line.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(r.event, e);
    }
}
