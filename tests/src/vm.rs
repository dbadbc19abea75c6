//! The appliance image booted in QEMU (software emulation: no KVM here).
//!
//! A [`Vm`] boots the image `image/build.sh` made — from its disk under
//! BIOS (SeaBIOS, syslinux) or UEFI (OVMF, systemd-boot), or
//! its kernel and initramfs directly — with the disks a test made, user
//! networking in `restrict=on` mode (the guest reaches nothing but what the
//! test forwards in with `guestfwd`), host ports on 127.0.0.1 forwarded to
//! guest ports, the serial console captured to a file and the QEMU monitor
//! on a unix socket (the power button, Ctrl-Alt-Del). Dropping it kills
//! QEMU.
//!
//! QEMU and OVMF come from `image/fetch-qemu.sh` (Debian's packages
//! unpacked into `GATEHOUSE_QEMU_DIR`, default `/var/tmp/gatehouse-qemu`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::gatehouse::workspace_root;
use crate::process::log_tail;

/// Environment variable naming the QEMU tool folder.
pub const QEMU_DIR_ENV: &str = "GATEHOUSE_QEMU_DIR";
/// Environment variable naming the image's output folder.
pub const IMAGE_DIR_ENV: &str = "GATEHOUSE_IMAGE_DIR";
/// Where the guest reaches the host services a test forwards in.
pub const HOST_ADDR_IN_GUEST: &str = "10.0.2.100";

/// Guest memory. The appliance runs from its initramfs (about 60 MB
/// unpacked) and the daemon needs little; 512 MiB leaves room for both.
const MEMORY_MIB: u32 = 512;

/// How often readiness and serial polls look again.
const POLL: Duration = Duration::from_millis(200);

/// How long one readiness probe waits for a reply.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How the guest boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boot {
    /// `-kernel vmlinuz -initrd initramfs.img`, no firmware boot loader.
    Direct,
    /// SeaBIOS reads the disk's MBR; syslinux loads the kernel.
    Bios,
    /// OVMF starts `EFI/BOOT/BOOTX64.EFI`: systemd-boot, which loads the
    /// same kernel and initramfs as syslinux.
    Uefi,
}

/// A disk attached to the guest.
#[derive(Clone, Debug)]
pub enum Disk {
    /// A virtio disk the guest may write.
    Virtio(PathBuf),
    /// A CD-ROM on the IDE bus (how QEMU's `-cdrom` and many clouds attach
    /// seed media).
    Cdrom(PathBuf),
}

/// The files `image/build.sh` leaves in `image/out` (or
/// `$GATEHOUSE_IMAGE_DIR`).
#[derive(Clone, Debug)]
pub struct ImageFiles {
    pub dir: PathBuf,
}

impl ImageFiles {
    /// The built image; an error says how to build it when it is missing.
    pub fn find() -> Result<Self> {
        let dir = std::env::var_os(IMAGE_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("image/out"));
        let files = ImageFiles { dir };
        for f in [
            "gatehouse.img",
            "gatehouse.qcow2",
            "vmlinuz",
            "initramfs.img",
        ] {
            if !files.dir.join(f).is_file() {
                bail!(
                    "{} is missing: build the image first (`bash image/build.sh`)",
                    files.dir.join(f).display()
                );
            }
        }
        Ok(files)
    }

    pub fn disk(&self) -> PathBuf {
        self.dir.join("gatehouse.img")
    }

    pub fn qcow2(&self) -> PathBuf {
        self.dir.join("gatehouse.qcow2")
    }

    pub fn kernel(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }

    pub fn initramfs(&self) -> PathBuf {
        self.dir.join("initramfs.img")
    }

    /// The kernel command line the image's boot loaders use, from the
    /// build's manifest, for direct boots.
    pub fn cmdline(&self) -> Result<String> {
        let manifest = fs::read_to_string(self.dir.join("manifest.txt"))
            .context("reading the image manifest")?;
        manifest
            .lines()
            .find_map(|l| l.strip_prefix("cmdline: "))
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the image manifest names no cmdline"))
    }
}

/// QEMU's tool folder: the binary, its libraries, firmware.
#[derive(Clone, Debug)]
pub struct Qemu {
    dir: PathBuf,
}

impl Qemu {
    pub fn find() -> Result<Self> {
        let dir = std::env::var_os(QEMU_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/gatehouse-qemu"));
        let qemu = Qemu { dir };
        if !qemu.binary().is_file() {
            bail!(
                "{} is missing: run `bash image/fetch-qemu.sh` (scripts/install-deps.sh does)",
                qemu.binary().display()
            );
        }
        Ok(qemu)
    }

    fn binary(&self) -> PathBuf {
        self.dir.join("usr/bin/qemu-system-x86_64")
    }

    fn ovmf_code(&self) -> PathBuf {
        self.dir.join("usr/share/OVMF/OVMF_CODE_4M.fd")
    }

    fn ovmf_vars(&self) -> PathBuf {
        self.dir.join("usr/share/OVMF/OVMF_VARS_4M.fd")
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(self.binary());
        let libs = [
            self.dir.join("usr/lib/x86_64-linux-gnu"),
            self.dir.join("lib/x86_64-linux-gnu"),
        ];
        cmd.env(
            "LD_LIBRARY_PATH",
            std::env::join_paths(libs).unwrap_or_default(),
        )
        .arg("-L")
        .arg(self.dir.join("usr/share/qemu"))
        .arg("-L")
        .arg(self.dir.join("usr/share/seabios"));
        cmd
    }
}

/// What to boot and how it is wired.
#[derive(Clone, Debug)]
pub struct VmSpec {
    pub boot: Boot,
    pub disks: Vec<Disk>,
    /// Guest TCP ports reachable from the host, each on a free loopback
    /// port ([`Vm::host_port`]).
    pub forwarded_ports: Vec<u16>,
    /// Guest connections to `HOST_ADDR_IN_GUEST:port` run `relay
    /// host:port`: (guest port, host address).
    pub guest_forwards: Vec<(u16, String)>,
    /// `gatehouse-test-relay`, which carries guest forwards.
    pub relay: PathBuf,
    /// Appended to the kernel command line (direct boots only).
    pub extra_cmdline: String,
}

impl VmSpec {
    pub fn new(boot: Boot, relay: &Path) -> Self {
        VmSpec {
            boot,
            disks: Vec::new(),
            forwarded_ports: Vec::new(),
            guest_forwards: Vec::new(),
            relay: relay.to_path_buf(),
            extra_cmdline: String::new(),
        }
    }

    pub fn disk(mut self, disk: Disk) -> Self {
        self.disks.push(disk);
        self
    }

    pub fn forward(mut self, guest_port: u16) -> Self {
        if !self.forwarded_ports.contains(&guest_port) {
            self.forwarded_ports.push(guest_port);
        }
        self
    }

    pub fn guest_forward(mut self, guest_port: u16, host: &str) -> Self {
        self.guest_forwards.push((guest_port, host.to_owned()));
        self
    }
}

/// A running QEMU.
pub struct Vm {
    child: Option<Child>,
    work: TempDir,
    forwards: BTreeMap<u16, u16>,
    started: Instant,
}

impl Vm {
    /// Starts QEMU. Host ports are picked free just before, so a start that
    /// lost one to another process is retried.
    pub fn start(image: &ImageFiles, spec: &VmSpec) -> Result<Self> {
        let qemu = Qemu::find()?;
        let mut last = None;
        for _ in 0..3 {
            let work = tempfile::Builder::new()
                .prefix("gatehouse-vm-")
                .tempdir()
                .context("creating the VM's work directory")?;
            let forwards = free_host_ports(&spec.forwarded_ports)?;
            let mut cmd = qemu.command();
            vm_args(&mut cmd, &qemu, image, spec, work.path(), &forwards)?;
            let log = fs::File::create(work.path().join("qemu.log"))?;
            let child = cmd
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting qemu-system-x86_64")?;
            let mut vm = Vm {
                child: Some(child),
                work,
                forwards,
                started: Instant::now(),
            };
            // QEMU binds every forward before it starts the guest: a quick
            // exit with "Could not set up host forwarding" means a lost race.
            std::thread::sleep(Duration::from_millis(500));
            if vm.exited()?.is_none() {
                return Ok(vm);
            }
            // The command line (every forward) is in the message; its end
            // says what went wrong.
            let log = vm.qemu_log();
            let said = tail_chars(&log, 300).to_owned();
            if !log.contains("host forwarding") {
                bail!("qemu exited at start: ...{said}");
            }
            last = Some(said);
        }
        bail!(
            "qemu could not bind its forwards: ...{}",
            last.unwrap_or_default()
        )
    }

    /// The loopback port on the host forwarded to `guest_port`.
    pub fn host_port(&self, guest_port: u16) -> u16 {
        self.forwards[&guest_port]
    }

    /// Every (guest port, host port) forward.
    pub fn forwards(&self) -> &BTreeMap<u16, u16> {
        &self.forwards
    }

    /// When QEMU was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Everything the serial console printed so far, across reboots, with
    /// the terminal's CR LF line ends as plain LF.
    pub fn serial(&self) -> String {
        fs::read(self.work.path().join("serial.log"))
            .map(|b| String::from_utf8_lossy(&b).replace("\r\n", "\n"))
            .unwrap_or_default()
    }

    /// QEMU's own output.
    pub fn qemu_log(&self) -> String {
        log_tail(&self.work.path().join("qemu.log"), 40)
    }

    /// Waits until the serial console printed `needle` after byte `from`
    /// (a length of [`Vm::serial`] taken earlier); returns the offset just
    /// past it.
    pub fn wait_serial(&mut self, from: usize, needle: &str, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let serial = self.serial();
            if let Some(at) = serial.get(from..).and_then(|s| s.find(needle)) {
                return Ok(from + at + needle.len());
            }
            if let Some(status) = self.exited()? {
                bail!(
                    "qemu exited ({status}) before the console printed {needle:?}; console:\n{}",
                    tail_chars(&serial, 4000)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "the console did not print {needle:?} within {timeout:?}; console:\n{}",
                    tail_chars(&serial, 4000)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the guest's PostgreSQL listener on `guest_port` answers
    /// an SSLRequest through its forward (user networking accepts host
    /// connections itself, so a plain connect proves nothing); returns the
    /// time since QEMU started.
    pub fn wait_postgres(&mut self, guest_port: u16, timeout: Duration) -> Result<Duration> {
        let port = self.host_port(guest_port);
        self.wait_ready(timeout, || postgres_answers(port), "PostgreSQL listener")
    }

    /// As [`Vm::wait_postgres`] for an SSH listener: its version banner.
    pub fn wait_ssh(&mut self, guest_port: u16, timeout: Duration) -> Result<Duration> {
        let port = self.host_port(guest_port);
        self.wait_ready(timeout, || ssh_banner(port).is_some(), "SSH listener")
    }

    fn wait_ready(
        &mut self,
        timeout: Duration,
        probe: impl Fn() -> bool,
        what: &str,
    ) -> Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            if probe() {
                return Ok(self.started.elapsed());
            }
            if let Some(status) = self.exited()? {
                bail!(
                    "qemu exited ({status}) before the {what} answered; console:\n{}",
                    tail_chars(&self.serial(), 4000)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "the {what} did not answer within {timeout:?}; console:\n{}",
                    tail_chars(&self.serial(), 4000)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Runs a QEMU monitor (HMP) command and returns its output.
    pub fn monitor(&self, command: &str) -> Result<String> {
        let mut sock = UnixStream::connect(self.work.path().join("monitor.sock"))
            .context("connecting to the QEMU monitor")?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        read_until_prompt(&mut sock)?;
        sock.write_all(format!("{command}\n").as_bytes())?;
        let out = read_until_prompt(&mut sock)?;
        Ok(out)
    }

    /// Presses the ACPI power button.
    pub fn power_button(&self) -> Result<()> {
        self.monitor("system_powerdown").map(drop)
    }

    /// Presses Ctrl-Alt-Del on the guest's keyboard.
    pub fn ctrl_alt_del(&self) -> Result<()> {
        self.monitor("sendkey ctrl-alt-delete").map(drop)
    }

    /// Waits for QEMU to exit (the guest powered off).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "qemu still runs {timeout:?} later; console:\n{}",
                    tail_chars(&self.serial(), 4000)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn exited(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => Err(anyhow!("qemu was not started")),
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // Either fails only when QEMU already exited.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A distinct free loopback port for each guest port: all are held open
/// while picking (a port released and picked again would be handed out
/// twice), then released for QEMU to bind.
fn free_host_ports(guest_ports: &[u16]) -> Result<BTreeMap<u16, u16>> {
    let mut held = Vec::with_capacity(guest_ports.len());
    let mut forwards = BTreeMap::new();
    for &guest in guest_ports {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding 127.0.0.1:0 to find a free port")?;
        forwards.insert(guest, listener.local_addr()?.port());
        held.push(listener);
    }
    Ok(forwards)
}

fn vm_args(
    cmd: &mut Command,
    qemu: &Qemu,
    image: &ImageFiles,
    spec: &VmSpec,
    work: &Path,
    forwards: &BTreeMap<u16, u16>,
) -> Result<()> {
    let mut netdev = String::from("user,id=net0,restrict=on");
    for (guest, host) in forwards {
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
    }
    for (guest, host) in &spec.guest_forwards {
        netdev.push_str(&format!(
            ",guestfwd=tcp:{HOST_ADDR_IN_GUEST}:{guest}-cmd:{} {host}",
            spec.relay.display()
        ));
    }
    cmd.args(["-machine", "pc", "-cpu", "max", "-smp", "1"])
        .args(["-m", &MEMORY_MIB.to_string()])
        .args(["-display", "none", "-vga", "std"])
        .arg("-serial")
        .arg(format!("file:{}", work.join("serial.log").display()))
        .arg("-monitor")
        .arg(format!(
            "unix:{},server=on,wait=off",
            work.join("monitor.sock").display()
        ))
        .args(["-netdev", &netdev])
        // No option ROM: neither firmware boots from the network.
        .args(["-device", "virtio-net-pci,netdev=net0,romfile="])
        .args(["-device", "virtio-rng-pci"]);
    match spec.boot {
        Boot::Direct => {
            let mut cmdline = image.cmdline()?;
            if !spec.extra_cmdline.is_empty() {
                cmdline.push(' ');
                cmdline.push_str(&spec.extra_cmdline);
            }
            cmd.arg("-kernel")
                .arg(image.kernel())
                .arg("-initrd")
                .arg(image.initramfs())
                .arg("-append")
                .arg(cmdline);
        }
        Boot::Bios | Boot::Uefi => {
            // The appliance never writes its boot disk; snapshot=on keeps
            // the built image pristine even if it did. bootindex=0 makes
            // it the firmware's first choice, as an admin's VM definition
            // would: without it OVMF first tries every CD-ROM (the seed
            // CD, or QEMU's empty default drive), which cost 1.4–2.4 s of
            // each UEFI boot here. It also leaves the IDE controller as
            // OVMF found it, channels off, which the boot script must
            // handle to find a seed CD (`enable_ide_channels`).
            cmd.arg("-drive")
                .arg(format!(
                    "file={},format=qcow2,if=none,id=boot,snapshot=on",
                    image.qcow2().display()
                ))
                .args(["-device", "virtio-blk-pci,drive=boot,bootindex=0"]);
        }
    }
    if spec.boot == Boot::Uefi {
        let vars = work.join("OVMF_VARS.fd");
        fs::copy(qemu.ovmf_vars(), &vars).context("copying the OVMF variable store")?;
        cmd.arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                qemu.ovmf_code().display()
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
    }
    for disk in &spec.disks {
        match disk {
            // cache=unsafe: the guest's flushes reach QEMU but not the
            // host's disk, whose latency on a busy machine would dominate
            // boot times. Guest crash semantics are unchanged: what the
            // guest wrote before a power cut is in the host file.
            Disk::Virtio(path) => cmd.arg("-drive").arg(format!(
                "file={},format=raw,if=virtio,cache=unsafe",
                path.display()
            )),
            Disk::Cdrom(path) => cmd.arg("-drive").arg(format!(
                "file={},format=raw,if=ide,media=cdrom",
                path.display()
            )),
        };
    }
    Ok(())
}

/// Whether a PostgreSQL server answers an SSLRequest on the loopback port.
pub fn postgres_answers(port: u16) -> bool {
    let Some(mut stream) = connect(port) else {
        return false;
    };
    // SSLRequest: length 8, code 80877103.
    if stream
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .is_err()
    {
        return false;
    }
    let mut reply = [0u8; 1];
    matches!(stream.read(&mut reply), Ok(1) if reply[0] == b'S' || reply[0] == b'N')
}

/// The SSH version line a server on the loopback port sends, if any.
pub fn ssh_banner(port: u16) -> Option<String> {
    let mut stream = connect(port)?;
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.starts_with("SSH-").then_some(text)
}

/// What a port forwarded into the guest does with a connection: user
/// networking accepts on the host side, then closes at once when the guest
/// refuses, while a guest service keeps the connection (and may speak).
pub fn guest_port_open(port: u16) -> bool {
    let Some(mut stream) = connect(port) else {
        return false;
    };
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        // Closed by the far side with nothing said: the guest refused.
        Ok(0) => false,
        Ok(_) => true,
        // Still open and silent when the probe gave up: something listens.
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn connect(port: u16) -> Option<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    Some(stream)
}

fn read_until_prompt(sock: &mut UnixStream) -> Result<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(b"(qemu) ") {
        let n = sock.read(&mut buf).context("reading the QEMU monitor")?;
        if n == 0 {
            bail!("the QEMU monitor closed");
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The last `n` characters of `text` (on a character boundary).
pub fn tail_chars(text: &str, n: usize) -> &str {
    let mut start = text.len().saturating_sub(n);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A blank raw disk of `mib` MiB (sparse): the appliance formats it as its
/// data disk on first boot.
pub fn blank_disk(path: &Path, mib: u64) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.set_len(mib * 1024 * 1024)?;
    Ok(())
}

/// A seed disk: a FAT file system labelled GHSEED holding the files of
/// `dir` (made with mkfs.vfat and mtools, as an admin would).
pub fn vfat_seed(dir: &Path, image: &Path) -> Result<()> {
    let _ = fs::remove_file(image);
    crate::process::run_checked(
        Command::new("mkfs.vfat")
            .args(["-C", "-n", "GHSEED"])
            .arg(image)
            .arg("4096"),
        crate::process::DEFAULT_TIMEOUT,
    )
    .context("mkfs.vfat (dosfstools)")?;
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    let mut mcopy = Command::new("mcopy");
    mcopy
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-s")
        .arg("-i")
        .arg(image)
        .args(&entries)
        .arg("::/");
    crate::process::run_checked(&mut mcopy, crate::process::DEFAULT_TIMEOUT)
        .context("mcopy (mtools)")?;
    Ok(())
}

/// A seed disk as an ISO 9660 image labelled GHSEED, with Rock Ridge names
/// (made with xorriso, as for a CD-ROM).
pub fn iso_seed(dir: &Path, image: &Path) -> Result<()> {
    let _ = fs::remove_file(image);
    crate::process::run_checked(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-R", "-J", "-V", "GHSEED", "-o"])
            .arg(image)
            .arg(dir),
        crate::process::DEFAULT_TIMEOUT,
    )
    .context("xorriso")?;
    Ok(())
}

/// A file from the appliance's ext4 data disk, read with debugfs while the
/// guest is off: what an investigator with the disk would see.
pub fn data_disk_file(disk: &Path, path: &str) -> Result<Vec<u8>> {
    let out = crate::process::run_checked(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat {path}"))
            .arg(disk),
        crate::process::DEFAULT_TIMEOUT,
    )
    .context("debugfs (e2fsprogs)")?;
    Ok(out.stdout)
}
