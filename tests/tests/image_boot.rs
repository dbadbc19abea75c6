//! The appliance image booted in QEMU the ways it is deployed: from its
//! disk under BIOS and UEFI, and by direct kernel boot. The guest's user
//! networking runs with `restrict=on`: it reaches nothing but the host
//! services forwarded in at 10.0.2.100 (a PostgreSQL cluster and the OIDC
//! issuer, over HTTPS with a private CA), and the host reaches it only
//! through forwarded loopback ports.
//!
//! What an admin, an agent and an auditor would check: a seed disk
//! configures the appliance; psql through the appliance reaches the
//! database with a token; recordings export over the admin SSH port and
//! verify on another machine with the signing key read off the console;
//! Ctrl-Alt-Del and the ACPI power button stop the daemon cleanly (the
//! session cut by the shutdown is recorded as terminated, not interrupted);
//! recordings survive reboots; a bad seed leaves the old config running and
//! shows its FILE:LINE errors on the serial console; only Gatehouse's ports
//! are open; without a seed the minimal config runs; a power cut right
//! after the first start does not stop the next one. The appliance finds
//! the database and the issuer by name: through a DNS server on the host
//! (over TCP, the only way out of restricted user networking) in one test
//! and through the seed's hosts file in another.
//!
//! Needs `bash image/build.sh` and `bash image/fetch-qemu.sh` first
//! (`scripts/test.sh` runs both).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use gatehouse_tests::process::{DEFAULT_TIMEOUT, run, run_checked};
use gatehouse_tests::vm::{
    self, Boot, Disk, HOST_ADDR_IN_GUEST, ImageFiles, Vm, VmSpec, blank_disk, guest_port_open,
    iso_seed, vfat_seed,
};
use gatehouse_tests::{
    Claims, DnsServer, Issuer, IssuerOptions, OutputExt, PgCluster, PgTarget, SslMode,
};
use serde_json::Value;
use tempfile::TempDir;

/// `[listen] postgres` and `[listen] admin_ssh` inside the guest.
const PG_PORT: u16 = 5432;
const ADMIN_PORT: u16 = 2222;
/// Where the guest finds the host's PostgreSQL, issuer and DNS server
/// (guestfwd).
const GUEST_DB_PORT: u16 = 5432;
const GUEST_IDP_PORT: u16 = 443;
const GUEST_DNS_PORT: u16 = 53;
/// The names the config uses for those: resolved by the static binary's
/// own resolver, from DNS or the seed's hosts file.
const DB_HOST: &str = "db.gatehouse.test";
const IDP_HOST: &str = "idp.gatehouse.test";

/// Software emulation on a busy 2-core machine: a boot takes seconds to
/// tens of seconds; this only bounds a hang.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// A clean power-off: the daemon drains (`shutdown_grace` is 3 s in the
/// seed) and the data disk is unmounted.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(180);

/// Guest ports the scan looks at: all privileged ports (where a shell,
/// web, DNS or file service would sit) and common service ports above.
fn scanned_ports() -> Vec<u16> {
    let mut ports: Vec<u16> = (1..=1024).collect();
    ports.extend([
        2222, 2375, 3000, 3306, 5000, 5432, 6379, 8000, 8080, 8443, 9000, 9090,
    ]);
    ports
}

/// How the appliance finds the database and the issuer by name.
#[derive(Clone, Copy)]
enum Names {
    /// The DNS server on the host (network.conf `DNS=`).
    Dns,
    /// The seed's hosts file.
    HostsFile,
}

/// The host side of a test: the database the agent reaches, the issuer,
/// the certificates, the operator's key, and the disks.
struct Lab {
    pg: PgCluster,
    issuer: Issuer,
    dns: DnsServer,
    dir: TempDir,
    relay: PathBuf,
    operator_pub: String,
}

impl Lab {
    fn start() -> Result<Lab> {
        let pg = PgCluster::start()?;
        pg.psql_direct(
            "app",
            "CREATE TABLE customers (id int PRIMARY KEY, name text); \
             INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace');",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-image-")
            .tempdir()?;
        make_ca(dir.path())?;
        issue_cert(
            dir.path(),
            "appliance",
            &["DNS:gatehouse.test", "IP:127.0.0.1"],
        )?;
        issue_cert(dir.path(), "idp", &[&format!("DNS:{IDP_HOST}")])?;
        let issuer = https_issuer(dir.path())?;
        let key = dir.path().join("operator");
        run_checked(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "auditor@test", "-f"])
                .arg(&key),
            DEFAULT_TIMEOUT,
        )?;
        let operator_pub = fs::read_to_string(key.with_extension("pub"))?
            .trim()
            .to_owned();
        let guest_host: std::net::Ipv4Addr = HOST_ADDR_IN_GUEST.parse()?;
        let dns = DnsServer::start(&[(DB_HOST, guest_host), (IDP_HOST, guest_host)])?;
        Ok(Lab {
            pg,
            issuer,
            dns,
            dir,
            relay: PathBuf::from(env!("CARGO_BIN_EXE_gatehouse-test-relay")),
            operator_pub,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A seed directory holding `config` and the files it names.
    /// A seed directory holding `config`, the files it names, and
    /// network.conf (`network` plus what `names` needs) or hosts.
    fn seed_dir(&self, name: &str, config: &str, names: Names, network: &str) -> Result<PathBuf> {
        let seed = self.path(name);
        let _ = fs::remove_dir_all(&seed);
        fs::create_dir_all(seed.join("secrets"))?;
        fs::write(seed.join("gatehouse.toml"), config)?;
        let mut network = network.to_owned();
        match names {
            // TCP: restricted user networking carries nothing else out.
            Names::Dns => {
                network.push_str(&format!("DNS={HOST_ADDR_IN_GUEST}\nDNS_OPTIONS=use-vc\n"))
            }
            Names::HostsFile => fs::write(
                seed.join("hosts"),
                format!("{HOST_ADDR_IN_GUEST} {DB_HOST} {IDP_HOST}\n"),
            )?,
        }
        if !network.is_empty() {
            fs::write(seed.join("network.conf"), network)?;
        }
        fs::write(seed.join("secrets/orders-db.password"), self.pg.password())?;
        fs::copy(self.path("appliance.crt"), seed.join("secrets/server.crt"))?;
        fs::copy(self.path("appliance.key"), seed.join("secrets/server.key"))?;
        fs::copy(self.path("ca.crt"), seed.join("secrets/idp-ca.pem"))?;
        Ok(seed)
    }

    /// The config a seed carries: PostgreSQL and the admin endpoint, the
    /// appliance's certificate, one operator, the issuer on the private CA,
    /// one connection to the host's database, strict recording.
    fn config(&self) -> String {
        format!(
            r#"[appliance]
name = "bastion-test"
data_dir = "/var/lib/gatehouse"

[listen]
postgres = "0.0.0.0:{PG_PORT}"
admin_ssh = "0.0.0.0:{ADMIN_PORT}"

[tls]
cert = "secrets/server.crt"
key = "secrets/server.key"

[[operators]]
name = "auditor"
public_key = "{operator}"

[auth.oidc]
issuer = "{issuer}"
audience = "gatehouse"
groups_claim = "groups"
ca_file = "secrets/idp-ca.pem"

[limits]
shutdown_grace = "3s"

[[roles]]
name = "deployers"
groups = ["ci-deploy"]
connections = ["orders-db"]

[[connections]]
name = "orders-db"
kind = "postgres"
address = "{DB_HOST}:{GUEST_DB_PORT}"
database = "app"
user = "gatehouse"
password_file = "secrets/orders-db.password"
tls = "disable"
policy = "default"

[policies.default]
recording = "strict"
"#,
            operator = self.operator_pub,
            issuer = self.issuer.url(),
        )
    }

    fn spec(&self, boot: Boot) -> VmSpec {
        let mut spec = VmSpec::new(boot, &self.relay)
            .guest_forward(GUEST_DB_PORT, &self.pg.address())
            .guest_forward(GUEST_IDP_PORT, &format!("127.0.0.1:{}", self.issuer.port()))
            .guest_forward(GUEST_DNS_PORT, &self.dns.address());
        for port in scanned_ports() {
            spec = spec.forward(port);
        }
        spec
    }

    /// psql as `sub` through the appliance reads the host's table.
    fn reaches_database(&self, vm: &Vm, sub: &str) -> Result<()> {
        let rows = self
            .agent(vm, sub)?
            .psql("select count(*) from customers")?
            .success_text()?;
        ensure!(rows == "2", "{sub} read {rows:?}");
        Ok(())
    }

    fn token(&self, sub: &str) -> Result<String> {
        self.issuer.mint(&Claims::new(sub).groups(["ci-deploy"]))
    }

    /// psql through the appliance's forwarded port, verifying its
    /// certificate against the test CA by name (127.0.0.1 is in it).
    fn agent(&self, vm: &Vm, sub: &str) -> Result<PgTarget> {
        Ok(PgTarget {
            host: "127.0.0.1".into(),
            port: vm.host_port(PG_PORT),
            dbname: "orders-db".into(),
            user: sub.into(),
            password: self.token(sub)?,
            sslmode: SslMode::VerifyFull,
            sslrootcert: Some(self.path("ca.crt")),
            timeout: Duration::from_secs(120),
        })
    }
}

/// A private CA (what an organisation's IdP and the appliance's
/// certificate chain to), made with the openssl CLI.
fn make_ca(dir: &Path) -> Result<()> {
    run_checked(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=gatehouse test CA"])
            .arg("-keyout")
            .arg(dir.join("ca.key"))
            .arg("-out")
            .arg(dir.join("ca.crt")),
        DEFAULT_TIMEOUT,
    )?;
    Ok(())
}

/// NAME.crt and NAME.key signed by the test CA for the given SANs.
fn issue_cert(dir: &Path, name: &str, sans: &[&str]) -> Result<()> {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let ext = dir.join(format!("{name}.ext"));
    fs::write(&ext, format!("subjectAltName={}\n", sans.join(",")))?;
    run_checked(
        Command::new("openssl")
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-subj"])
            .arg(format!("/CN={name}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
        DEFAULT_TIMEOUT,
    )?;
    run_checked(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(dir.join("ca.crt"))
            .arg("-CAkey")
            .arg(dir.join("ca.key"))
            .args(["-CAcreateserial", "-extfile"])
            .arg(&ext)
            .arg("-out")
            .arg(dir.join(format!("{name}.crt"))),
        DEFAULT_TIMEOUT,
    )?;
    Ok(())
}

/// The issuer, served over HTTPS at `https://IDP_HOST` with the
/// certificate the test CA signed for that name.
fn https_issuer(dir: &Path) -> Result<Issuer> {
    Issuer::start_with(IssuerOptions {
        tls: true,
        cert: Some((dir.join("idp.crt"), dir.join("idp.key"))),
        public_url: Some(format!("https://{IDP_HOST}:{GUEST_IDP_PORT}")),
        ..IssuerOptions::default()
    })
}

/// The `openssl x509 -fingerprint -sha256` form of a certificate's digest.
fn cert_fingerprint(cert: &Path) -> Result<String> {
    let out = run_checked(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(cert),
        DEFAULT_TIMEOUT,
    )?;
    let text = out.stdout_text();
    text.split_once('=')
        .map(|(_, fp)| fp.trim().to_owned())
        .ok_or_else(|| anyhow!("unexpected openssl output {text:?}"))
}

/// What the status screen printed last for a label, e.g. "TLS cert".
fn status_value(serial: &str, label: &str) -> Option<String> {
    serial
        .lines()
        .rev()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(|rest| rest.trim().to_owned())
}

/// The (socket, label) lines under "Listening" on the last status screen:
/// the guest's own /proc/net/tcp{,6}, each socket named by the config key
/// it belongs to.
fn listening_sockets(serial: &str) -> Vec<(String, String)> {
    let Some(start) = serial.rfind("Listening\n") else {
        return Vec::new();
    };
    serial[start + "Listening\n".len()..]
        .lines()
        .take_while(|l| l.starts_with("              "))
        .map(|l| {
            let (socket, label) = l.trim().split_once(' ').unwrap_or((l.trim(), ""));
            (socket.to_owned(), label.trim().to_owned())
        })
        .collect()
}

/// The admin SSH endpoint as an auditor uses it: the host key pinned after
/// comparing it with the fingerprint on the appliance's console.
struct Auditor {
    key: PathBuf,
    known_hosts: PathBuf,
    port: u16,
}

impl Auditor {
    /// Reads the host key off the port, checks its fingerprint against the
    /// console's, and pins it.
    fn pin(lab: &Lab, vm: &Vm) -> Result<Auditor> {
        let port = vm.host_port(ADMIN_PORT);
        let scan = run_checked(
            Command::new("ssh-keyscan")
                .args(["-t", "ed25519", "-p"])
                .arg(port.to_string())
                .arg("127.0.0.1"),
            DEFAULT_TIMEOUT,
        )?;
        let line = scan.stdout_text();
        let known_hosts = lab.path("known_hosts");
        fs::write(&known_hosts, format!("{line}\n"))?;
        let fp = run_checked(
            Command::new("ssh-keygen").arg("-lf").arg(&known_hosts),
            DEFAULT_TIMEOUT,
        )?
        .stdout_text();
        let fp = fp
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow!("ssh-keygen -l printed {fp:?}"))?
            .to_owned();
        let console = status_value(&vm.serial(), "admin SSH host key")
            .ok_or_else(|| anyhow!("the console shows no admin SSH host key"))?;
        ensure!(
            console == fp,
            "console shows host key {console}, the port presents {fp}"
        );
        Ok(Auditor {
            key: lab.path("operator"),
            known_hosts,
            port,
        })
    }

    fn ssh(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new("ssh");
        cmd.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
        .arg("-i")
        .arg(&self.key)
        .arg("-p")
        .arg(self.port.to_string())
        .arg("auditor@127.0.0.1")
        .args(args);
        run(&mut cmd, Duration::from_secs(120))
    }

    fn sessions(&self) -> Result<Vec<Value>> {
        let out = self.ssh(&["recordings", "list", "--json"])?;
        let text = out.success_text()?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("parsing {l}")))
            .collect()
    }

    /// The one PostgreSQL session of `user`.
    fn session_of(&self, user: &str) -> Result<Value> {
        let sessions = self.sessions()?;
        let mine: Vec<&Value> = sessions
            .iter()
            .filter(|h| h["protocol"] == "postgres" && h["client_user"] == user)
            .collect();
        match mine.as_slice() {
            [one] => Ok((*one).clone()),
            _ => bail!("expected one session of {user}: {sessions:#?}"),
        }
    }
}

/// Boots and waits for the PostgreSQL listener; returns the boot time.
fn boot(image: &ImageFiles, spec: &VmSpec, what: &str) -> Result<(Vm, Duration)> {
    let mut vm = Vm::start(image, spec)?;
    let ready = vm.wait_postgres(PG_PORT, BOOT_TIMEOUT)?;
    // The boot script's own account of where the time went, from the
    // status screen (redrawn within seconds).
    let _ = vm.wait_serial(0, "booted: ", Duration::from_secs(30));
    let serial = vm.serial();
    let note = |prefix: &str| {
        serial
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or("?")
            .to_owned()
    };
    eprintln!(
        "{what}: QEMU start to PostgreSQL listener answering: {ready:.1?} ({}; {})",
        note("booted: "),
        note("setup: ")
    );
    Ok((vm, ready))
}

/// Presses the power button and waits for the guest to power off.
fn power_off(vm: &mut Vm) -> Result<()> {
    let from = vm.serial().len();
    vm.power_button()?;
    vm.wait_serial(from, "gatehouse: daemon stopped", POWEROFF_TIMEOUT)?;
    vm.wait_exit(POWEROFF_TIMEOUT)?;
    Ok(())
}

/// The guest ports that accept connections, of those forwarded.
fn open_ports(vm: &Vm) -> BTreeSet<u16> {
    vm.forwards()
        .iter()
        .filter(|(_, host)| guest_port_open(**host))
        .map(|(guest, _)| *guest)
        .collect()
}

#[test]
fn bios_boot_serves_agents_auditors_and_keeps_recordings_across_reboots() -> Result<()> {
    let image = ImageFiles::find()?;
    let lab = Lab::start()?;
    let data = lab.path("data.img");
    blank_disk(&data, 512)?;
    let seed = lab.path("seed.img");
    vfat_seed(&lab.seed_dir("seed", &lab.config(), Names::Dns, "")?, &seed)?;
    let spec = lab
        .spec(Boot::Bios)
        .disk(Disk::Virtio(data.clone()))
        .disk(Disk::Virtio(seed.clone()));

    let (mut vm, _) = boot(&image, &spec, "BIOS, first boot")?;
    vm.wait_serial(0, "listen.admin_ssh", BOOT_TIMEOUT)?;

    // The console: the seed applied, the appliance's certificate and keys.
    let serial = vm.serial();
    ensure!(serial.contains("seed from /dev/vdc applied"), "{serial}");
    let tls = status_value(&serial, "TLS cert").ok_or_else(|| anyhow!("no TLS line: {serial}"))?;
    ensure!(
        tls == format!("SHA-256 {}", cert_fingerprint(&lab.path("appliance.crt"))?),
        "console shows {tls}"
    );
    let signing_key = status_value(&serial, "recording signing key")
        .and_then(|v| v.strip_prefix("ed25519 ").map(str::to_owned))
        .ok_or_else(|| anyhow!("no signing key on the console: {serial}"))?;
    ensure!(signing_key.len() == 64, "signing key {signing_key:?}");

    // An agent: psql with a token reaches the host's database.
    let agent = lab.agent(&vm, "ci-runner-1")?;
    let rows = agent
        .psql("select name from customers order by id")?
        .success_text()?;
    assert_eq!(rows, "Ada\nGrace");
    // It found the database and the issuer by DNS.
    let asked = lab.dns.queries();
    for name in [DB_HOST, IDP_HOST] {
        ensure!(
            asked.iter().any(|q| q == name),
            "{name} was not looked up: {asked:?}"
        );
    }

    // Only Gatehouse's ports: from outside, and as the guest's own
    // /proc/net/tcp lists them on the console.
    let open = open_ports(&vm);
    assert_eq!(
        open,
        BTreeSet::from([PG_PORT, ADMIN_PORT]),
        "open guest ports"
    );
    assert_eq!(
        listening_sockets(&vm.serial()),
        vec![
            (
                format!("0.0.0.0:{ADMIN_PORT}"),
                "listen.admin_ssh".to_owned()
            ),
            (format!("0.0.0.0:{PG_PORT}"), "listen.postgres".to_owned()),
        ],
        "listening sockets in the guest"
    );

    // An auditor exports over the admin SSH port and verifies the archive
    // here, with the key copied from the console.
    let auditor = Auditor::pin(&lab, &vm)?;
    let session = auditor.session_of("ci-runner-1")?;
    // The guest's clock (from the emulated RTC) is the host's: the
    // recording's start is within a minute of now.
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as i64;
    let started = session["started_at"].as_i64().unwrap_or(0);
    ensure!(
        (now_us - started).abs() < 60_000_000,
        "recording started at {started}, host time {now_us}"
    );
    let id = session["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no id"))?
        .to_owned();
    let jsonl = auditor
        .ssh(&["recordings", "export", &id])?
        .success_text()?;
    ensure!(
        jsonl.contains("select name from customers order by id"),
        "{jsonl}"
    );
    let archive = auditor.ssh(&[
        "recordings",
        "export",
        "--since",
        "1d",
        "--format",
        "archive",
    ])?;
    ensure!(
        archive.status.success(),
        "export: {}",
        archive.stderr_text()
    );
    fs::write(lab.path("export.tar.zst"), &archive.stdout)?;
    fs::write(lab.path("signing.pub"), format!("{signing_key}\n"))?;
    let verify = run(
        Command::new(gatehouse_tests::gatehouse::gatehouse_bin()?)
            .args(["recordings", "verify", "--archive"])
            .arg(lab.path("export.tar.zst"))
            .arg("--public-key")
            .arg(lab.path("signing.pub")),
        DEFAULT_TIMEOUT,
    )?;
    ensure!(
        verify.status.success(),
        "archive verify: {}{}",
        verify.stdout_text(),
        verify.stderr_text()
    );

    // Ctrl-Alt-Del with a statement running: the daemon drains, the
    // session is cut and recorded as terminated, the guest reboots.
    let sleeper = lab.agent(&vm, "ci-runner-2")?;
    let sleeping = std::thread::spawn(move || sleeper.psql("select pg_sleep(600)"));
    common_wait(Duration::from_secs(120), || {
        Ok(lab.pg.psql_direct(
            "app",
            "select count(*) from pg_stat_activity where query like 'select pg_sleep%'",
        )? == "1")
    })?;
    let from = vm.serial().len();
    vm.ctrl_alt_del()?;
    let cut = sleeping
        .join()
        .map_err(|_| anyhow!("psql thread panicked"))??;
    ensure!(
        !cut.status.success(),
        "pg_sleep was not cut: {}",
        cut.stdout_text()
    );
    ensure!(
        cut.stderr_text().contains("terminating connection"),
        "{}",
        cut.stderr_text()
    );
    let after = vm.wait_serial(from, "gatehouse: daemon stopped", POWEROFF_TIMEOUT)?;
    vm.wait_serial(after, "Gatehouse appliance", BOOT_TIMEOUT)?;
    vm.wait_postgres(PG_PORT, BOOT_TIMEOUT)?;
    vm.wait_ssh(ADMIN_PORT, BOOT_TIMEOUT)?;

    // Still there after the reboot, sealed, and verifying on the box.
    ensure!(auditor.session_of("ci-runner-1")?["outcome"] == "closed");
    let cut_session = auditor.session_of("ci-runner-2")?;
    ensure!(cut_session["outcome"] == "terminated", "{cut_session:#}");
    let verified = auditor.ssh(&["recordings", "verify", "--all"])?;
    ensure!(
        verified.status.success(),
        "verify --all: {}{}",
        verified.stdout_text(),
        verified.stderr_text()
    );

    // The power button: a clean power-off.
    power_off(&mut vm)?;

    // A bad seed: its errors with file and line on the serial console, the
    // previous config still serving.
    let bad = lab
        .config()
        .replace("shutdown_grace = \"3s\"", "shutdown_grace = \"soon\"");
    let bad_line = bad
        .lines()
        .position(|l| l.starts_with("shutdown_grace"))
        .map(|n| n + 1);
    vfat_seed(&lab.seed_dir("bad-seed", &bad, Names::Dns, "")?, &seed)?;
    let (mut vm, _) = boot(&image, &spec, "BIOS, bad seed")?;
    let serial = vm.serial();
    ensure!(
        serial.contains("REJECTED; the previous config keeps running"),
        "{serial}"
    );
    let line = format!(
        "GHSEED/gatehouse.toml:{}: limits.shutdown_grace",
        bad_line.unwrap_or(0)
    );
    ensure!(
        serial.contains(&line),
        "no {line:?} on the console:\n{serial}"
    );
    lab.reaches_database(&vm, "ci-runner-3")?;
    power_off(&mut vm)?;
    Ok(())
}

#[test]
fn uefi_boot_with_a_cd_seed_and_a_static_address() -> Result<()> {
    let image = ImageFiles::find()?;
    let lab = Lab::start()?;
    let data = lab.path("data.img");
    blank_disk(&data, 256)?;
    let seed = lab.path("seed.iso");
    let network = "MODE=static\nADDRESS=10.0.2.15/24\nGATEWAY=10.0.2.2\nHOSTNAME=bastion-7\n";
    iso_seed(
        &lab.seed_dir("seed", &lab.config(), Names::HostsFile, network)?,
        &seed,
    )?;
    let spec = lab
        .spec(Boot::Uefi)
        .disk(Disk::Virtio(data))
        .disk(Disk::Cdrom(seed));
    let (mut vm, _) = boot(&image, &spec, "UEFI")?;
    vm.wait_serial(0, "listen.admin_ssh", BOOT_TIMEOUT)?;
    let serial = vm.serial();
    ensure!(
        serial.contains("(bastion-7)"),
        "hostname not applied:\n{serial}"
    );
    ensure!(
        serial.contains("eth0 10.0.2.15/24  [static]"),
        "static address not applied:\n{serial}"
    );
    // Then the operator console opens over the status screen.
    vm.wait_serial(0, "[1 Sessions]", BOOT_TIMEOUT)?;
    lab.reaches_database(&vm, "ci-runner-9")?;
    // By the seed's hosts file: no DNS server is configured.
    ensure!(
        lab.dns.queries().is_empty(),
        "asked DNS: {:?}",
        lab.dns.queries()
    );
    power_off(&mut vm)?;
    Ok(())
}

#[test]
fn without_a_seed_the_minimal_config_runs_and_survives_a_power_cut() -> Result<()> {
    let image = ImageFiles::find()?;
    let dir = tempfile::Builder::new()
        .prefix("gatehouse-image-")
        .tempdir()?;
    let relay = PathBuf::from(env!("CARGO_BIN_EXE_gatehouse-test-relay"));
    let spec = VmSpec::new(Boot::Direct, &relay).forward(PG_PORT);

    // No data disk: nothing starts, and the console says why.
    let mut vm = Vm::start(&image, &spec)?;
    vm.wait_serial(0, "Data disk     NONE", BOOT_TIMEOUT)?;
    ensure!(vm.serial().contains("no data disk: attach a blank disk"));
    ensure!(
        !guest_port_open(vm.host_port(PG_PORT)),
        "something listens without a data disk"
    );
    drop(vm);

    // A blank data disk and no seed: the minimal config, which generates
    // the appliance's CA and refuses every token.
    let data = dir.path().join("data.img");
    blank_disk(&data, 256)?;
    let spec = spec.disk(Disk::Virtio(data.clone()));
    let (mut vm, _) = boot(&image, &spec, "direct boot, first start")?;
    vm.wait_serial(0, "TLS CA                 SHA-256", BOOT_TIMEOUT)?;
    let serial = vm.serial();
    ensure!(serial.contains("running the minimal config"), "{serial}");
    let ca = status_value(&serial, "TLS CA").ok_or_else(|| anyhow!("no CA: {serial}"))?;
    let refused = PgTarget {
        host: "127.0.0.1".into(),
        port: vm.host_port(PG_PORT),
        dbname: "anything".into(),
        user: "agent".into(),
        password: "not-a-token".into(),
        sslmode: SslMode::Require,
        sslrootcert: None,
        timeout: Duration::from_secs(60),
    }
    .psql("select 1")?;
    ensure!(
        !refused.status.success(),
        "the minimal config let a client in"
    );

    // Power cut (QEMU killed) right after the first start; the next boot
    // must come up with the same CA.
    drop(vm);
    let (mut vm, _) = boot(&image, &spec, "direct boot, after a power cut")?;
    vm.wait_serial(0, "TLS CA                 SHA-256", BOOT_TIMEOUT)?;
    assert_eq!(
        status_value(&vm.serial(), "TLS CA").as_deref(),
        Some(ca.as_str())
    );
    power_off(&mut vm)?;

    // The CA on the data disk is the one the console showed.
    let pem = vm::data_disk_file(&data, "/tls/ca.crt")?;
    fs::write(dir.path().join("ca.crt"), pem)?;
    assert_eq!(
        ca,
        format!("SHA-256 {}", cert_fingerprint(&dir.path().join("ca.crt"))?)
    );
    Ok(())
}

/// Polls `done` until it holds or `timeout` passes.
fn common_wait(timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !done()? {
        if Instant::now() >= deadline {
            bail!("condition not met within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
