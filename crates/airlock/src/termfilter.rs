//! Guest output on its way to the host terminal: removes the escape sequences that reach past
//! the screen into the host, and passes every other byte unchanged.
//!
//! Removed are OSC 52 (set the clipboard), OSC 0, 1 and 2 (window and icon titles), and their
//! relatives: an OSC with an empty number (read as 0), dtterm's `OSC l`/`OSC L` titles,
//! Konsole's OSC 30 tab title, kitty's OSC 5522 clipboard and iTerm2's `OSC 1337 ;
//! Copy=`/`CopyToClipboard=`/`EndCopy`. Introducers are `ESC ]`, U+009D (`C2 9D`) and a 0x9d
//! byte outside any UTF-8 character (a Latin-1 terminal reads it as OSC; inside a character,
//! as in `丝` or `❝`, it is text and passes). Terminators are BEL, `ESC \`, `C2 9C` and 0x9c.
//! Colours, cursor movement and other OSCs (8 hyperlinks, 7 directory, 133 prompts) pass byte
//! for byte.
//!
//! The filter is a state machine fed chunk by chunk, so a sequence split between reads is seen
//! whole. It holds back only an undecided introducer and number (at most [`MAX_PENDING`]
//! bytes). Stdout and stderr reach one terminal through two filters, so neither may stop in a
//! state the other's bytes could complete: a held `ESC` is written only with the character
//! after it, and an OSC number only with the byte that ends it. `writer` applies it
//! to an `AsyncWrite`.

mod writer;

pub use writer::stdio;

/// Most bytes held back while a sequence is undecided; beyond that it is removed.
pub const MAX_PENDING: usize = 64;
/// Most bytes of a removed sequence dropped while waiting for its terminator; after that
/// output passes again (the terminal never saw the introducer, so it is plain text).
pub const MAX_DROPPED: usize = 1 << 20;
/// Most `ESC` bytes kept of a run (each one restarts the escape, so a longer run means no
/// more to a terminal).
const MAX_ESC_RUN: usize = 16;

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;
const CAN: u8 = 0x18;
const SUB: u8 = 0x1a;
/// C1 OSC and ST as single bytes; in UTF-8 they follow a `C2` lead.
const C1_OSC: u8 = 0x9d;
const C1_ST: u8 = 0x9c;
const C2: u8 = 0xc2;

/// OSC numbers that are removed: titles (0, 1, 2), Konsole's tab title (30), the clipboard (52)
/// and kitty's clipboard protocol (5522).
const REMOVED_NUMBERS: &[u32] = &[0, 1, 2, 30, 52, 5522];
/// iTerm2's OSC 1337 keys that write the clipboard.
const REMOVED_ITERM_KEYS: &[&[u8]] = &[b"copy", b"copytoclipboard", b"endcopy"];
const ITERM: u32 = 1337;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Plain output; `cont` UTF-8 continuation bytes are still expected.
    Ground { cont: u8 },
    /// Held: an optional run of `ESC` and a UTF-8 lead byte waiting for `need` more bytes.
    Char { need: u8 },
    /// Held: one or more `ESC`.
    Esc,
    /// Held: an OSC introducer and the digits of its number so far.
    Number { value: u32, digits: bool },
    /// Held: `OSC 1337 ;` and the key so far, from `pending[start..]`.
    Key { start: usize },
    /// Held: a whole OSC without body, and the `ESC` that may start its `ESC \` terminator.
    EndEsc { remove: bool },
    /// Dropping the body of a removed sequence: `dropped` bytes so far, `cont` UTF-8
    /// continuation bytes expected, the last byte a `C2` lead.
    Drop {
        dropped: usize,
        cont: u8,
        after_c2: bool,
    },
    /// Dropping, and an `ESC` came: `\` ends the sequence, anything else ends it too.
    DropEsc,
}

/// The filter for one output stream.
#[derive(Debug, Clone)]
pub struct TermFilter {
    state: State,
    pending: Vec<u8>,
    removed: u64,
}

impl Default for TermFilter {
    fn default() -> Self {
        Self {
            state: State::Ground { cont: 0 },
            pending: Vec::new(),
            removed: 0,
        }
    }
}

/// UTF-8 continuation bytes a lead byte announces; 0 for anything else.
fn continuations(b: u8) -> u8 {
    match b {
        0xc2..=0xdf => 1,
        0xe0..=0xef => 2,
        0xf0..=0xf4 => 3,
        _ => 0,
    }
}

fn is_continuation(b: u8) -> bool {
    (0x80..=0xbf).contains(&b)
}

/// C0 controls that terminals skip inside an OSC (everything but those that end it).
fn ignored_in_osc(b: u8) -> bool {
    b < 0x20 && !matches!(b, BEL | CAN | SUB | ESC)
}

impl TermFilter {
    /// A filter in its initial state.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many sequences were removed so far.
    pub fn removed(&self) -> u64 {
        self.removed
    }

    /// How many bytes are held back.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.pending.len()
    }

    /// Filters `input`, appending what may be shown to `out`. Bytes of an undecided sequence
    /// are held until a later call decides it.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.step(b, out);
        }
    }

    /// Ends the stream: an undecided sequence is dropped (a lone `C2` is passed, it cannot
    /// begin one on its own), and the filter starts over.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.state {
            State::Char { .. } if self.pending == [C2] => out.push(C2),
            State::EndEsc { remove: true } => self.removed += 1,
            _ => {}
        }
        self.pending.clear();
        self.state = State::Ground { cont: 0 };
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        // A byte that ends one state may start another: `again` loops instead of recursing.
        let mut again = true;
        while again {
            again = false;
            match self.state {
                State::Ground { cont } => self.ground(cont, b, out),
                State::Char { need } => again = self.char(need, b, out),
                State::Esc => self.esc(b, out),
                State::Number { value, digits } => again = self.number(value, digits, b, out),
                State::Key { start } => again = self.key(start, b, out),
                State::EndEsc { remove } => again = self.end_esc(remove, b, out),
                State::Drop {
                    dropped,
                    cont,
                    after_c2,
                } => self.drop_body(dropped, cont, after_c2, b),
                State::DropEsc => again = self.drop_esc(b),
            }
        }
    }

    fn ground(&mut self, cont: u8, b: u8, out: &mut Vec<u8>) {
        if cont > 0 && is_continuation(b) {
            out.push(b);
            self.state = State::Ground { cont: cont - 1 };
            return;
        }
        match b {
            ESC => self.hold(b, State::Esc),
            // Held so that a following 9D (U+009D) is seen as an introducer.
            C2 => self.hold(b, State::Char { need: 1 }),
            C1_OSC => self.hold(b, Self::osc()),
            _ => {
                out.push(b);
                self.state = State::Ground {
                    cont: continuations(b),
                };
            }
        }
    }

    fn hold(&mut self, b: u8, state: State) {
        self.pending.push(b);
        self.state = state;
    }

    fn osc() -> State {
        State::Number {
            value: 0,
            digits: false,
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.pending);
    }

    /// Drops what is held; `count` when it was a clipboard or title sequence.
    fn discard(&mut self, count: bool) {
        self.pending.clear();
        if count {
            self.removed += 1;
        }
    }

    /// A held character (after `ESC`s, or a lone `C2`). Returns true to look at `b` again.
    fn char(&mut self, need: u8, b: u8, out: &mut Vec<u8>) -> bool {
        if self.pending.last() == Some(&C2) && b == C1_OSC {
            self.hold(b, Self::osc());
            return false;
        }
        if is_continuation(b) {
            self.pending.push(b);
            if need <= 1 {
                self.flush(out);
                self.state = State::Ground { cont: 0 };
            } else {
                self.state = State::Char { need: need - 1 };
            }
            return false;
        }
        // Invalid UTF-8. After `ESC` it means nothing to a terminal, and written alone it
        // would leave the terminal inside an escape: drop it. A lone `C2` passes as it came.
        if self.pending.first() == Some(&ESC) {
            self.discard(false);
        } else {
            self.flush(out);
        }
        self.state = State::Ground { cont: 0 };
        true
    }

    fn esc(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b']' | C1_OSC => self.hold(b, Self::osc()),
            ESC => {
                if self.pending.len() < MAX_ESC_RUN {
                    self.pending.push(b);
                }
            }
            0xc2..=0xf4 => self.hold(
                b,
                State::Char {
                    need: continuations(b),
                },
            ),
            _ => {
                // The escape is complete with this byte; written together, never apart.
                self.flush(out);
                out.push(b);
                self.state = State::Ground { cont: 0 };
            }
        }
    }

    /// Reading an OSC number. Returns true to look at `b` again.
    fn number(&mut self, value: u32, digits: bool, b: u8, out: &mut Vec<u8>) -> bool {
        if self.pending.len() >= MAX_PENDING {
            return self.start_drop();
        }
        match b {
            b'0'..=b'9' => {
                self.pending.push(b);
                self.state = State::Number {
                    value: value.saturating_mul(10).saturating_add(u32::from(b - b'0')),
                    digits: true,
                };
                false
            }
            _ if ignored_in_osc(b) => {
                self.pending.push(b);
                false
            }
            b';' if digits && value == ITERM => {
                self.pending.push(b);
                self.state = State::Key {
                    start: self.pending.len(),
                };
                false
            }
            0x20..=0x7e => {
                let remove = match (digits, b) {
                    // An empty number reads as 0 (a title) in some terminals.
                    (false, b';' | b'l' | b'L') => true,
                    (false, _) => false,
                    (true, _) => REMOVED_NUMBERS.contains(&value),
                };
                self.decide(remove, b, out)
            }
            _ => self.end_without_body(digits && REMOVED_NUMBERS.contains(&value), b, out),
        }
    }

    /// Reading an iTerm2 key after `OSC 1337 ;`. Returns true to look at `b` again.
    fn key(&mut self, start: usize, b: u8, out: &mut Vec<u8>) -> bool {
        if self.pending.len() >= MAX_PENDING {
            return self.start_drop();
        }
        if b.is_ascii_alphanumeric() || ignored_in_osc(b) {
            self.pending.push(b);
            return false;
        }
        let key: Vec<u8> = self
            .pending
            .get(start..)
            .unwrap_or_default()
            .iter()
            .filter(|c| !ignored_in_osc(**c))
            .map(u8::to_ascii_lowercase)
            .collect();
        let remove = REMOVED_ITERM_KEYS.contains(&key.as_slice());
        if (0x20..=0x7e).contains(&b) {
            self.decide(remove, b, out)
        } else {
            self.end_without_body(remove, b, out)
        }
    }

    /// The printable byte `b` ended the number or key: remove the sequence, or write it out
    /// with `b` (which ends the number for the terminal too). Returns true to look at `b` again.
    fn decide(&mut self, remove: bool, b: u8, out: &mut Vec<u8>) -> bool {
        if remove {
            return self.start_drop();
        }
        self.flush(out);
        out.push(b);
        self.state = State::Ground { cont: 0 };
        false
    }

    /// A non-printable `b` came right after the number or key: the OSC has no body. Returns
    /// true to look at `b` again.
    fn end_without_body(&mut self, remove: bool, b: u8, out: &mut Vec<u8>) -> bool {
        match b {
            // Complete: written whole, or dropped whole.
            BEL | CAN | SUB => {
                if remove {
                    self.discard(true);
                } else {
                    self.flush(out);
                    out.push(b);
                }
                self.state = State::Ground { cont: 0 };
                false
            }
            ESC => {
                self.hold(b, State::EndEsc { remove });
                false
            }
            // Anything else (DEL, 8-bit bytes): no program sends that, and terminals disagree
            // on it; dropping the undecided sequence is the one safe reading.
            _ => {
                self.discard(remove);
                self.state = State::Ground { cont: 0 };
                true
            }
        }
    }

    /// `ESC` after a number or key: `\` completes the OSC. Returns true to look at `b` again.
    fn end_esc(&mut self, remove: bool, b: u8, out: &mut Vec<u8>) -> bool {
        if b == b'\\' {
            if remove {
                self.discard(true);
            } else {
                self.flush(out);
                out.push(b);
            }
            self.state = State::Ground { cont: 0 };
            return false;
        }
        // The `ESC` aborts the bodiless OSC and starts a new escape sequence.
        self.discard(remove);
        self.hold(ESC, State::Esc);
        true
    }

    /// Removes the held sequence and drops its body. Returns true: the current byte belongs
    /// to the body.
    fn start_drop(&mut self) -> bool {
        self.discard(true);
        self.state = State::Drop {
            dropped: 0,
            cont: 0,
            after_c2: false,
        };
        true
    }

    fn drop_body(&mut self, dropped: usize, cont: u8, after_c2: bool, b: u8) {
        self.state = match b {
            BEL | CAN | SUB => State::Ground { cont: 0 },
            ESC => State::DropEsc,
            // 8-bit ST, raw or as U+009C; a 9C inside another UTF-8 character is text.
            C1_ST if after_c2 || cont == 0 => State::Ground { cont: 0 },
            _ if dropped + 1 >= MAX_DROPPED => State::Ground { cont: 0 },
            _ => State::Drop {
                dropped: dropped + 1,
                cont: if cont > 0 && is_continuation(b) {
                    cont - 1
                } else {
                    continuations(b)
                },
                after_c2: b == C2,
            },
        };
    }

    /// `ESC` inside a dropped body. Returns true to look at `b` again.
    fn drop_esc(&mut self, b: u8) -> bool {
        if b == b'\\' {
            self.state = State::Ground { cont: 0 };
            return false;
        }
        // A terminal ends the OSC at the `ESC` and starts a new escape with it.
        self.hold(ESC, State::Esc);
        true
    }
}

#[cfg(test)]
mod tests;
