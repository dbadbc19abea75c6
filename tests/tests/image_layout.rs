//! What is in the appliance image, and the buildroot tree that builds the
//! same appliance from source (buildroot itself cannot run here: it
//! downloads its sources).
//!
//! The image's initramfs holds the shared overlay byte for byte, a static
//! gatehouse, the public web roots, and nothing that serves a shell,
//! installs software or compiles; the overlay's scripts parse under the
//! image's own busybox. The buildroot tree has its BR2_EXTERNAL files, its
//! overlay is the directory image/build.sh uses, and its post-build script
//! does what image/build.sh does to busybox's links.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail, ensure};
use gatehouse_tests::gatehouse::workspace_root;
use gatehouse_tests::process::{DEFAULT_TIMEOUT, run};
use gatehouse_tests::vm::ImageFiles;

/// One entry of a newc cpio archive: its mode and, for files and links,
/// its data (a link's data is its target).
struct Entry {
    mode: u32,
    data: Vec<u8>,
}

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// The initramfs's entries by path (without the leading "./").
fn initramfs(image: &ImageFiles) -> Result<BTreeMap<String, Entry>> {
    let mut compressed = fs::File::open(image.initramfs())?;
    let mut cpio = Vec::new();
    zstd::stream::read::Decoder::new(&mut compressed)?.read_to_end(&mut cpio)?;
    let mut entries = BTreeMap::new();
    let mut at = 0;
    let field = |bytes: &[u8], i: usize| -> Result<usize> {
        let hex = std::str::from_utf8(&bytes[6 + i * 8..6 + (i + 1) * 8])?;
        Ok(usize::from_str_radix(hex, 16)?)
    };
    let pad4 = |n: usize| (n + 3) & !3;
    loop {
        let header = cpio
            .get(at..at + 110)
            .ok_or_else(|| anyhow!("truncated cpio header at {at}"))?;
        ensure!(&header[..6] == b"070701", "not a newc cpio archive at {at}");
        let mode = field(header, 1)? as u32;
        let size = field(header, 6)?;
        let name_len = field(header, 11)?;
        let name_start = at + 110;
        let name =
            String::from_utf8_lossy(&cpio[name_start..name_start + name_len - 1]).into_owned();
        let data_start = pad4(name_start + name_len);
        let data = cpio[data_start..data_start + size].to_vec();
        at = pad4(data_start + size);
        if name == "TRAILER!!!" {
            return Ok(entries);
        }
        let name = name.trim_start_matches("./").to_owned();
        entries.insert(name, Entry { mode, data });
    }
}

/// Files under `dir`, relative, recursively.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir)?.to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether an ELF executable asks for a program interpreter (is dynamic).
fn has_interpreter(elf: &[u8]) -> Result<bool> {
    ensure!(
        elf.get(..4) == Some(b"\x7fELF".as_slice()),
        "not an ELF file"
    );
    let u64_at = |i: usize| u64::from_le_bytes(elf[i..i + 8].try_into().unwrap_or([0; 8]));
    let u16_at = |i: usize| u16::from_le_bytes(elf[i..i + 2].try_into().unwrap_or([0; 2]));
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36) as usize, u16_at(0x38));
    const PT_INTERP: u32 = 3;
    Ok((0..phnum as usize).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap_or([0; 4])) == PT_INTERP
    }))
}

#[test]
fn the_image_holds_the_overlay_a_static_gatehouse_and_no_shell_service() -> Result<()> {
    let image = ImageFiles::find()?;
    let entries = initramfs(&image)?;
    let root = workspace_root();

    // The overlay, byte for byte.
    let overlay = root.join("image/rootfs");
    for rel in files_under(&overlay)? {
        let name = rel.to_string_lossy().into_owned();
        let entry = entries
            .get(&name)
            .ok_or_else(|| anyhow!("{name} from the overlay is not in the image"))?;
        ensure!(
            entry.data == fs::read(overlay.join(&rel))?,
            "{name} in the image differs from image/rootfs/{name}"
        );
        let want = fs::metadata(overlay.join(&rel))?.permissions().mode() & 0o111;
        ensure!(entry.mode & 0o111 == want, "{name}: executable bits differ");
    }

    let gatehouse = entries
        .get("usr/bin/gatehouse")
        .ok_or_else(|| anyhow!("no usr/bin/gatehouse"))?;
    ensure!(
        !has_interpreter(&gatehouse.data)?,
        "gatehouse is dynamically linked"
    );

    let roots = entries
        .get("etc/ssl/certs/ca-certificates.crt")
        .ok_or_else(|| anyhow!("no public web roots"))?;
    let count = String::from_utf8_lossy(&roots.data)
        .matches("-----BEGIN CERTIFICATE-----")
        .count();
    ensure!(count > 100, "only {count} root certificates");

    // Nothing that offers a shell, installs software or compiles (busybox
    // links are there, so the check below looks at real names).
    ensure!(entries.contains_key("bin/sh"), "no busybox links at all");
    let excluded = fs::read_to_string(root.join("image/excluded-applets.txt"))?;
    let mut forbidden: Vec<&str> = excluded
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    forbidden.extend([
        "sshd", "dropbear", "apt", "apt-get", "gcc", "cc", "rustc", "python3", "perl",
    ]);
    for (name, entry) in &entries {
        let (dir, base) = name.rsplit_once('/').unwrap_or(("", name));
        let kind = entry.mode & S_IFMT;
        let program_dir = ["bin", "sbin", "usr/bin", "usr/sbin"].contains(&dir);
        if program_dir && (kind == S_IFREG || kind == S_IFLNK) && forbidden.contains(&base) {
            bail!("{name} must not be in the image");
        }
    }
    // The only getty-like entries in inittab run the console screen.
    let inittab = String::from_utf8_lossy(&entries["etc/inittab"].data).into_owned();
    for line in inittab
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        ensure!(
            line.contains("/usr/lib/gatehouse/") || line.contains("/sbin/reboot"),
            "inittab runs something else: {line}"
        );
    }
    Ok(())
}

#[test]
fn the_overlay_scripts_parse_under_the_image_busybox() -> Result<()> {
    let image = ImageFiles::find()?;
    let entries = initramfs(&image)?;
    let dir = tempfile::tempdir()?;
    let busybox = dir.path().join("busybox");
    fs::write(&busybox, &entries["bin/busybox"].data)?;
    fs::set_permissions(&busybox, fs::Permissions::from_mode(0o755))?;
    let scripts = workspace_root().join("image/rootfs/usr/lib/gatehouse");
    for rel in files_under(&scripts)? {
        let out = run(
            Command::new(&busybox)
                .args(["sh", "-n"])
                .arg(scripts.join(&rel)),
            DEFAULT_TIMEOUT,
        )?;
        ensure!(
            out.status.success(),
            "{}: {}",
            rel.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[test]
fn the_buildroot_tree_builds_the_same_appliance() -> Result<()> {
    let root = workspace_root();
    let br = root.join("buildroot");
    let read = |p: &str| fs::read_to_string(br.join(p)).with_context(|| format!("buildroot/{p}"));

    ensure!(
        read("external.desc")?
            .lines()
            .any(|l| l == "name: GATEHOUSE")
    );
    ensure!(read("external.mk")?.contains("$(BR2_EXTERNAL_GATEHOUSE_PATH)/package/"));
    ensure!(read("Config.in")?.contains("package/gatehouse/Config.in"));
    let defconfig = read("configs/gatehouse_x86_64_defconfig")?;
    for line in [
        "BR2_PACKAGE_GATEHOUSE=y",
        "BR2_INIT_BUSYBOX=y",
        "BR2_ROOTFS_OVERLAY=\"$(BR2_EXTERNAL_GATEHOUSE_PATH)/board/gatehouse/rootfs-overlay\"",
        "BR2_ROOTFS_POST_BUILD_SCRIPT=\"$(BR2_EXTERNAL_GATEHOUSE_PATH)/board/gatehouse/post-build.sh\"",
        "BR2_LINUX_KERNEL=y",
    ] {
        ensure!(
            defconfig.lines().any(|l| l == line),
            "defconfig lacks {line}"
        );
    }
    let fragment = read("board/gatehouse/linux.fragment")?;
    for option in [
        "CONFIG_EXT4_FS=y",
        "CONFIG_VFAT_FS=y",
        "CONFIG_ISO9660_FS=y",
        "CONFIG_ACPI_BUTTON=y",
    ] {
        ensure!(
            fragment.lines().any(|l| l == option),
            "linux.fragment lacks {option}"
        );
    }
    let config_in = read("package/gatehouse/Config.in")?;
    ensure!(config_in.contains("select BR2_PACKAGE_HOST_RUSTC"));
    let mk = read("package/gatehouse/gatehouse.mk")?;
    ensure!(mk.contains("$(eval $(cargo-package))"));
    ensure!(mk.contains("GATEHOUSE_SITE_METHOD = local"));

    // The overlay is image/rootfs itself, not a copy.
    let overlay = fs::canonicalize(br.join("board/gatehouse/rootfs-overlay"))?;
    ensure!(
        overlay == fs::canonicalize(root.join("image/rootfs"))?,
        "the buildroot overlay is {}, not image/rootfs",
        overlay.display()
    );

    // The post-build script on a target with busybox links: excluded
    // applets lose their links, /init appears; a target carrying an SSH
    // server fails the build.
    let script = br.join("board/gatehouse/post-build.sh");
    ensure!(
        fs::metadata(&script)?.permissions().mode() & 0o111 != 0,
        "post-build.sh is not executable"
    );
    let target = tempfile::tempdir()?;
    for dir in ["bin", "sbin", "usr/bin", "usr/sbin"] {
        fs::create_dir_all(target.path().join(dir))?;
    }
    fs::write(target.path().join("bin/busybox"), b"")?;
    std::os::unix::fs::symlink("busybox", target.path().join("bin/sh"))?;
    std::os::unix::fs::symlink("../../bin/busybox", target.path().join("usr/sbin/telnetd"))?;
    std::os::unix::fs::symlink("../bin/busybox", target.path().join("sbin/getty"))?;
    let out = run(Command::new(&script).arg(target.path()), DEFAULT_TIMEOUT)?;
    ensure!(
        out.status.success(),
        "post-build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        target.path().join("bin/sh").exists(),
        "post-build removed bin/sh"
    );
    ensure!(
        fs::symlink_metadata(target.path().join("usr/sbin/telnetd")).is_err(),
        "telnetd kept"
    );
    ensure!(
        fs::symlink_metadata(target.path().join("sbin/getty")).is_err(),
        "getty kept"
    );
    ensure!(fs::read_link(target.path().join("init"))? == Path::new("/bin/busybox"));
    fs::write(target.path().join("usr/sbin/sshd"), b"")?;
    let out = run(Command::new(&script).arg(target.path()), DEFAULT_TIMEOUT)?;
    ensure!(
        !out.status.success(),
        "post-build accepted a target with sshd"
    );
    Ok(())
}
