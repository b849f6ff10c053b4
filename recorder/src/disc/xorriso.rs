//! Calling xorriso (GNU xorriso 1.5, Debian package `xorriso`): building an image,
//! listing the data extents of its files, burning, and the Joliet volume label.

use crate::RecorderError;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The xorriso program: `$FENGQIAO_XORRISO` or `xorriso` on `PATH`.
pub fn program() -> PathBuf {
    std::env::var_os("FENGQIAO_XORRISO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("xorriso"))
}

fn tool_err(message: impl Into<String>) -> RecorderError {
    RecorderError::Tool { tool: "xorriso".into(), message: message.into() }
}

fn spawn(args: &[std::ffi::OsString]) -> Result<std::process::Child, RecorderError> {
    Command::new(program())
        .args(args)
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                tool_err(format!("{} not found: install the Debian package xorriso", program().display()))
            } else {
                tool_err(format!("cannot start {}: {e}", program().display()))
            }
        })
}

/// Runs xorriso with `args`, calling `on_percent` with each `Writing: … NN.N%`
/// progress value; returns its stdout (result channel) on exit status 0.
///
/// # Errors
/// [`RecorderError::Tool`] (xorriso missing, or failed: its `FAILURE`/`SORRY`
/// lines), [`RecorderError::NoSpace`] when it reports `No space left on device` or
/// that the image `exceeds free space on media` (its check before writing).
pub(crate) fn run(args: &[std::ffi::OsString], out_for_errors: &Path, on_percent: &mut dyn FnMut(f64)) -> Result<String, RecorderError> {
    let mut child = spawn(args)?;
    let mut stdout = child.stdout.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let stderr = child.stderr.take().expect("piped");
    let mut messages = Vec::new();
    for line in BufReader::new(stderr).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line).into_owned();
        if let Some(rest) = line.split("Writing:").nth(1) {
            if let Some(p) = rest.split_whitespace().find_map(|w| w.strip_suffix('%').and_then(|n| n.parse::<f64>().ok())) {
                on_percent(p);
            }
            continue;
        }
        let problem = line.contains("FAILURE") || line.contains("SORRY") || line.contains("FATAL") || line.contains("No space");
        if problem && !line.contains("aborting : -abort_on") {
            messages.push(line.trim().trim_start_matches("xorriso : ").to_owned());
        }
    }
    let status = child.wait().map_err(|e| tool_err(format!("waiting for xorriso: {e}")))?;
    let stdout = out_thread.join().unwrap_or_default();
    if status.success() {
        return Ok(stdout);
    }
    let text = if messages.is_empty() { format!("exit status {status}") } else { messages.join("; ") };
    if text.contains("No space left on device") || text.contains("exceeds free space on media") {
        return Err(RecorderError::NoSpace { path: out_for_errors.to_owned(), message: text });
    }
    Err(tool_err(text))
}

/// The common head of every xorriso run: abort and exit non-zero on the first
/// FAILURE, UTF-8 names.
fn head() -> Vec<std::ffi::OsString> {
    ["-abort_on", "FAILURE", "-return_with", "SORRY", "32", "-report_about", "UPDATE", "-charset", "UTF-8"]
        .iter()
        .map(Into::into)
        .collect()
}

/// Builds an ISO 9660 level 3 image with Rock Ridge and Joliet (long names and
/// paths) at `image`, holding each `(source, disc path)` of `map` (disc paths
/// relative, `/`-separated). Files of 4 GiB and more become multi-extent files
/// (level 3); `-allow-limited-size` is never used.
pub(crate) fn build(
    image: &Path,
    volume_id: &str,
    app_id: &str,
    map: &[(PathBuf, String)],
    on_percent: &mut dyn FnMut(f64),
) -> Result<(), RecorderError> {
    let mut a = head();
    let mut dev = std::ffi::OsString::from("stdio:");
    dev.push(image.as_os_str());
    a.push("-outdev".into());
    a.push(dev);
    for s in [
        "-volid",
        volume_id,
        "-application_id",
        app_id,
        "-publisher",
        "Fengqiao",
        "-joliet",
        "on",
        "-rockridge",
        "on",
        "-compliance",
        "iso_9660_level=3:joliet_long_names:joliet_long_paths",
        "-disk_pattern",
        "off",
        "-iso_rr_pattern",
        "off",
        "-follow",
        "off",
        "-pacifier",
        "interval=0.5",
        // fsync once at the end, not every 16 MiB (xorriso's default for stdio:
        // files): 2.6× faster on a 1 GiB image here, and as durable when it returns.
        "-stdio_sync",
        "end",
    ] {
        a.push(s.into());
    }
    for (src, dst) in map {
        a.push("-map".into());
        a.push(src.clone().into_os_string());
        a.push(format!("/{dst}").into());
    }
    a.push("-commit".into());
    a.push("-end".into());
    run(&a, image, on_percent).map(|_| ())
}

/// One data section of a file in an image: start block (2048 bytes) and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Logical block address.
    pub lba: u64,
    /// Bytes of this section.
    pub bytes: u64,
}

/// Lists every file of the image or disc at `dev` (a file or `/dev/srN`) with its
/// data sections in order (`-find / -type f -exec report_sections`): disc path
/// without the leading `/` → extents. A multi-extent file has several.
pub fn extents(dev: &Path) -> Result<std::collections::BTreeMap<String, Vec<Extent>>, RecorderError> {
    let mut a = head();
    a.push("-indev".into());
    let mut d = std::ffi::OsString::from("stdio:");
    d.push(dev.as_os_str());
    a.push(d);
    for s in ["-find", "/", "-type", "f", "-exec", "report_sections", "--", "-end"] {
        a.push(s.into());
    }
    let out = run(&a, dev, &mut |_| {})?;
    let mut map: std::collections::BTreeMap<String, Vec<(u64, Extent)>> = Default::default();
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("File data lba:") else { continue };
        let parts: Vec<&str> = rest.splitn(5, ',').collect();
        if parts.len() != 5 {
            continue;
        }
        let num = |s: &str| s.trim().parse::<u64>().map_err(|_| tool_err(format!("unexpected report line {line:?}")));
        let xt = num(parts[0])?;
        let lba = num(parts[1])?;
        let bytes = num(parts[3])?;
        let path = unquote(parts[4].trim()).ok_or_else(|| tool_err(format!("unexpected path in {line:?}")))?;
        let path = path.trim_start_matches('/').to_owned();
        map.entry(path).or_default().push((xt, Extent { lba, bytes }));
    }
    Ok(map
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by_key(|(xt, _)| *xt);
            (k, v.into_iter().map(|(_, e)| e).collect())
        })
        .collect())
}

/// Undoes xorriso's shell-style quoting: `'it'"'"'s'` → `it's`.
fn unquote(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    c => out.push(c),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    c => out.push(c),
                }
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// Reads one file's bytes from `dev` by its extents, feeding `sink` in pieces of
/// at most 1 MiB.
pub fn read_extents(dev: &mut std::fs::File, extents: &[Extent], sink: &mut dyn FnMut(&[u8])) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    for e in extents {
        dev.seek(SeekFrom::Start(e.lba * 2048))?;
        let mut left = e.bytes;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            dev.read_exact(&mut buf[..n])?;
            sink(&buf[..n]);
            left -= n as u64;
        }
    }
    Ok(())
}

/// Writes `label` (at most 16 UCS-2 characters) into the volume identifier of the
/// image's Joliet supplementary volume descriptor (ECMA-119 §8.5: type 2, escape
/// sequence `%/@`, `%/C` or `%/E`; bytes 40–71, UCS-2BE, padded with U+0020).
/// xorriso writes its one `-volid` into both trees; the ISO tree keeps the
/// d-character id, Joliet readers (Windows) show this label.
///
/// # Errors
/// [`RecorderError::Io`]; [`RecorderError::Tool`] when the image has no Joliet descriptor.
pub(crate) fn set_joliet_label(image: &Path, label: &str) -> Result<(), RecorderError> {
    let io = RecorderError::io(image);
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(image).map_err(RecorderError::io(image))?;
    let mut field = Vec::with_capacity(32);
    for u in label.encode_utf16().take(16) {
        field.extend_from_slice(&u.to_be_bytes());
    }
    while field.len() < 32 {
        field.extend_from_slice(&[0, 0x20]);
    }
    let mut vd = [0u8; 2048];
    for sector in 16..64u64 {
        f.seek(SeekFrom::Start(sector * 2048)).map_err(RecorderError::io(image))?;
        f.read_exact(&mut vd).map_err(RecorderError::io(image))?;
        if &vd[1..6] != b"CD001" {
            break;
        }
        if vd[0] == 255 {
            break;
        }
        if vd[0] == 2 && vd[88] == b'%' && vd[89] == b'/' && matches!(vd[90], b'@' | b'C' | b'E') {
            f.seek(SeekFrom::Start(sector * 2048 + 40)).map_err(RecorderError::io(image))?;
            f.write_all(&field).map_err(io)?;
            f.sync_all().map_err(RecorderError::io(image))?;
            return Ok(());
        }
    }
    Err(tool_err(format!("{}: no Joliet volume descriptor", image.display())))
}

/// Burns `image` to `device` with xorriso's cdrecord emulation
/// (`xorriso -as cdrecord -v dev=DEVICE blank=as_needed IMAGE`), reporting
/// percent. `device` is an optical drive (`/dev/srN`) or, for tests, a regular
/// file (xorriso's `stdio:` pseudo-drive). The disc is not ejected: it is read back.
///
/// # Errors
/// [`RecorderError::NoDrive`] when `device` does not exist;
/// [`RecorderError::Tool`] when xorriso fails (no medium, not writable, …).
pub(crate) fn burn(image: &Path, device: &Path, on_percent: &mut dyn FnMut(f64)) -> Result<(), RecorderError> {
    let drive = is_block_or_char(device);
    let mut dev = std::ffi::OsString::from(if drive { "dev=" } else { "dev=stdio:" });
    dev.push(device.as_os_str());
    let mut a = head();
    a.truncate(a.len() - 2); // no -charset before -as
    // No -eject: the disc is read back right after.
    if !drive {
        a.extend(["-stdio_sync".into(), "end".into()]);
    }
    a.extend(["-as".into(), "cdrecord".into(), "-v".into(), dev, "blank=as_needed".into()]);
    a.push(image.as_os_str().to_owned());
    run(&a, device, on_percent).map(|_| ())
}

/// Whether `p` is a block or character device (an optical drive node).
pub(crate) fn is_block_or_char(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    std::fs::metadata(p).map(|m| m.file_type().is_block_device() || m.file_type().is_char_device()).unwrap_or(false)
}
