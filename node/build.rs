//! Link flags for the node's binaries.
//!
//! On Linux with glibc 2.36 or newer, the binaries are linked with
//! `-z pack-relative-relocs` (DT_RELR). The release `gateway` is a PIE with
//! about 37,000 relative relocations; as classic `.rela.dyn` entries they
//! take 880 kB of the file, and the dynamic loader reads all of them at
//! start, so they stay resident for the life of the process. Packed, the
//! table is a few kB (docs/benchmarks.md, "Session 7"). The binary then
//! needs glibc >= 2.36 where it runs, which is why the flag depends on the
//! glibc of the build machine and is not used when cross-compiling.
//!
//! `GATEWAY_PACK_RELOCS=0` turns it off.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GATEWAY_PACK_RELOCS");
    if std::env::var("GATEWAY_PACK_RELOCS").as_deref() == Ok("0") {
        return;
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    if glibc_version().is_some_and(|v| v >= (2, 36)) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// The build machine's glibc version, from `getconf GNU_LIBC_VERSION`
/// ("glibc 2.36").
fn glibc_version() -> Option<(u32, u32)> {
    let out = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.trim().strip_prefix("glibc ")?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}
