//! A writer for the `newc` cpio format, which the kernel unpacks as the initramfs.
//!
//! Entries are written in order; parents must come before children. All files get mtime 0 and
//! sequential inode numbers so the same inputs give the same bytes.

use std::io::{self, Write};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Builds a cpio archive in memory.
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    owner: (u32, u32),
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            written: 0,
            next_ino: 1,
            owner: (0, 0),
        }
    }

    pub fn dir_owned(&mut self, path: &str, perm: u32, owner: (u32, u32)) -> io::Result<()> {
        self.owner = owner;
        let r = self.entry(path, S_IFDIR | perm, 2, (0, 0), &[]);
        self.owner = (0, 0);
        r
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | perm, 1, (0, 0), data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(path, S_IFCHR | perm, 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.next_ino = 0;
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        if path.is_empty() || path.starts_with('/') || path.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad cpio path {path:?}"),
            ));
        }
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{path}: too large"))
        })?;
        let namesize = u32::try_from(path.len() + 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name too long"))?;
        let ino = self.next_ino;
        self.next_ino = self.next_ino.saturating_add(1);
        let fields = [
            ino,
            mode,
            self.owner.0,
            self.owner.1,
            nlink,
            0,
            size,
            0,
            0,
            rdev.0,
            rdev.1,
            namesize,
            0,
        ];
        let mut header = String::from("070701");
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.put(header.as_bytes())?;
        self.put(path.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4)) % 4;
        for _ in 0..n {
            self.put(&[0])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_newc() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("init", 0o755, b"abc").unwrap();
        let out = w.finish().unwrap();
        // header (110) + "init\0" (5) padded to 116, data 3 padded to 120
        assert_eq!(&out[..6], b"070701");
        assert_eq!(&out[6..14], b"00000001"); // ino
        assert_eq!(&out[14..22], b"000081ed"); // regular file 0755
        assert_eq!(&out[54..62], b"00000003"); // size
        assert_eq!(&out[110..115], b"init\0");
        assert_eq!(&out[116..119], b"abc");
        assert_eq!(out.len() % 4, 0);
        assert!(out.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn rejects_absolute_and_empty_paths() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file("/init", 0o755, b"").is_err());
        assert!(w.dir_owned("", 0o755, (0, 0)).is_err());
    }

    #[test]
    fn cpio_tool_lists_it_when_present() {
        let Ok(true) = std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .map(|o| o.status.success())
        else {
            return; // the format checks above still ran
        };
        let mut w = CpioWriter::new(Vec::new());
        w.dir_owned("bin", 0o755, (0, 0)).unwrap();
        w.file("bin/x", 0o644, b"hello").unwrap();
        w.symlink("bin/y", "x").unwrap();
        let bytes = w.finish().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-it", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "bin\nbin/x\nbin/y\n"
        );
    }
}
