//! The cloud path end to end in the box: `virgad` (every role, its embedded database) runs
//! inside the box (scripts/kvmbox, a real KVM under QEMU's TCG), its API forwarded to
//! 127.0.0.1 here, and the real `openstack` client from outside registers the Debian cloud
//! image (guest/cloud/build.sh) with no `kernel_id` (its bytes PUT by curl inside the
//! box: QEMU's forward is slow), creates a server from it and deletes it.
//! The server goes ACTIVE once its VMM runs (as Nova's does); the agent boots the kernel inside
//! the image (`images::bootdisk` via the base cache) with `root=PARTUUID=`; cloud-init reads the
//! config drive, sets the host name, installs the key for `debian` and runs the user data's
//! `runcmd`; systemd reaches multi-user.target and starts a getty on ttyS0; all of it is read
//! with `openstack console log show`. Delete leaves no VMM, instance directory or overlay.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod box_support;
#[allow(dead_code)] // the admin helpers use another password
#[path = "cloud_support/cli.rs"]
mod cli;

use box_support::kvmbox::{self, Spec};
use box_support::linux_guest;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const ADMIN_PASSWORD: &str = "box-cloud-admin";
const HOSTNAME: &str = "virga-cloud-vm";
const KEY_COMMENT: &str = "virga-box-test";
/// The box's own ports: the API, and the one that tells the box script the outside is done.
const API_PORT: u16 = 5000;
const DONE_PORT: u16 = 5001;

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// One request line to the box script's listener (forwarded from 127.0.0.1:`port`), sent
/// again until the box answers `ok` (QEMU's forward accepts before the box listens).
fn tell_box(port: u16, line: &str) {
    use std::io::Read;
    for _ in 0..100 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut answer = String::new();
            if s.write_all(format!("{line}\n").as_bytes()).is_ok()
                && s.read_to_string(&mut answer).is_ok()
                && answer.trim() == "ok"
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("the box does not take requests ({line:?})");
}

/// The box's side: bootstrap and start virgad, wait for the outside, then check what delete
/// left and print virgad's log.
fn box_script(public_url: &str) -> String {
    format!(
        r#". /kvmbox/lib.sh
        # Room for the image store, the base cache and the overlay.
        mkdir -p /tmp/virga && mount -t tmpfs -o size=4g virga /tmp/virga
        cat >/tmp/virgad.toml <<EOF
[server]
listen = "10.0.2.15:{API_PORT}"
public_url = "{public_url}"
data_dir = "/tmp/virga"
EOF
        /kvmbox/bin/virgad --config /tmp/virgad.toml bootstrap \
          --bootstrap-password {ADMIN_PASSWORD} >/tmp/bootstrap.txt 2>&1 ||
          {{ cat /tmp/bootstrap.txt; fail "virgad bootstrap"; }}
        RUST_LOG=info /kvmbox/bin/virgad --config /tmp/virgad.toml >/tmp/virgad.txt 2>&1 &
        daemon=$!
        echo BOX-VIRGAD-STARTED
        # The outside's requests, one connection each: "upload ID TOKEN" (the image's bytes
        # PUT to the Image API from here), then "done".
        while :; do
          socat TCP-LISTEN:{DONE_PORT},bind=10.0.2.15,reuseaddr \
            SYSTEM:'head -n 1 >/tmp/cmd; echo ok'
          set -- $(cat /tmp/cmd)
          case $1 in
            upload)
              # curl, not socat: hyper drops a connection whose client half-closes it, and
              # socat half-closes once the body is sent, before the answer comes.
              t0=$(date +%s)
              code=$(curl -sS -o /tmp/upload.txt -w '%{{http_code}}' -X PUT \
                -H "X-Auth-Token: $3" -H 'Content-Type: application/octet-stream' \
                -T /c/debian.qcow2 "http://10.0.2.15:{API_PORT}/image/v2/images/$2/file")
              echo "BOX-UPLOAD $(( $(date +%s) - t0 )) s: HTTP $code $(cat /tmp/upload.txt)" ;;
            *) break ;;
          esac
        done
        echo "BOX-LEFT vmm=$(for p in /proc/[0-9]*; do tr '\0' ' ' <$p/cmdline 2>/dev/null |
          grep -q "^$VMM " && echo ${{p#/proc/}}; done | wc -l)" \
          "instances=$(ls /tmp/virga/instances 2>/dev/null | wc -l)" \
          "overlays=$(ls /tmp/virga/_base/overlays 2>/dev/null | wc -l)"
        kill $daemon; wait $daemon
        echo BOX-VIRGAD-LOG-BEGIN; tail -n 80 /tmp/virgad.txt; echo BOX-VIRGAD-LOG-END"#
    )
}

#[test]
fn openstack_client_outside_boots_the_debian_image_on_virgad_in_the_box() {
    let test = "openstack_client_outside_boots_the_debian_image_on_virgad_in_the_box";
    if cli::openstack_or_skip().is_none() {
        return;
    }
    let Some(dir) = linux_guest::artifacts(&["debian.qcow2"]) else {
        return;
    };
    let image = std::fs::canonicalize(dir.join("debian.qcow2")).unwrap();
    let (api, done) = (free_port(), free_port());
    let public_url = format!("http://127.0.0.1:{api}");
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/box_support/lib.sh");
    let mut spec = Spec::default()
        .file(env!("CARGO_BIN_EXE_virgad"), "/kvmbox/bin/virgad")
        .file(&image, "/c/debian.qcow2")
        .file("/usr/bin/curl", "/usr/bin/curl")
        .file(&lib, "/kvmbox/lib.sh");
    spec.hostfwd = vec![(api, API_PORT), (done, DONE_PORT)];
    let script = box_script(&public_url);
    let started = Instant::now();
    let inside =
        std::thread::spawn(move || kvmbox::run(test, &spec, &script, Duration::from_secs(1800)));
    let finished = |inside: std::thread::JoinHandle<Option<kvmbox::Run>>| {
        inside.join().expect("the box thread")
    };

    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        outside(&public_url, done, &image, &inside)
    }));
    // Whatever happened outside, the box checks what is left, and its output is shown.
    let _ = std::panic::catch_unwind(|| tell_box(done, "done"));
    let run = finished(inside);
    eprintln!("whole box run: {:?}", started.elapsed());
    if let Err(panic) = outcome {
        eprintln!("{test}: the box's output:\n{run:?}");
        std::panic::resume_unwind(panic);
    }
    let Some(run) = run else {
        return;
    };
    assert_eq!(
        run.status, 0,
        "{test}: the box script failed:\n{}",
        run.output
    );
    assert!(
        run.output.contains("BOX-LEFT vmm=0 instances=0 overlays=0"),
        "delete left something:\n{}",
        run.output
    );
}

/// The client's side, against virgad in the box.
fn outside(
    public_url: &str,
    done: u16,
    image: &Path,
    inside: &std::thread::JoinHandle<Option<kvmbox::Run>>,
) {
    let test = "outside";
    let Some(openstack) = cli::openstack_or_skip() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let client = cli::Client {
        bin: openstack,
        home: home.path().to_owned(),
        auth_url: format!("{public_url}/identity/v3"),
    };
    let os = |args: &[&str]| client.run("admin", ADMIN_PASSWORD, "admin", args);
    // The API, once the box runs virgad (the box's start is a few seconds; bootstrap at TCG
    // speed more).
    let deadline = Instant::now() + Duration::from_secs(600);
    while os(&["token", "issue", "-f", "value", "-c", "id"]).is_err() {
        assert!(
            !inside.is_finished(),
            "{test}: the box ended before virgad answered"
        );
        assert!(
            Instant::now() < deadline,
            "{test}: virgad in the box did not answer"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let must = |args: &[&str]| os(args).unwrap_or_else(|e| panic!("{e}"));

    // The image's record POSTed from here, its bytes PUT to the same Image API from inside the
    // box (QEMU's user networking at TCG speed carries about 0.5 MB/s: `image create --file`
    // took 12 minutes), then checked against the file here.
    let t = Instant::now();
    // (`image create` without --file uploads its stdin: the record is made by a plain POST,
    // the client's own first request.)
    let token = must(&["token", "issue", "-f", "value", "-c", "id"]);
    let token = token.trim();
    let created = std::process::Command::new("curl")
        .args([
            "-sS",
            "-f",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-H",
        ])
        .arg(format!("X-Auth-Token: {token}"))
        .arg("-d")
        .arg(r#"{"name": "debian", "disk_format": "qcow2", "container_format": "bare"}"#)
        .arg(format!("{public_url}/image/v2/images"))
        .output()
        .expect("curl");
    assert!(created.status.success(), "{created:?}");
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let image_id = created["id"].as_str().expect("the image's id");
    tell_box(done, &format!("upload {image_id} {token}"));
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let status = must(&["image", "show", image_id, "-f", "value", "-c", "status"]);
        if status.trim() == "active" {
            break;
        }
        assert!(
            Instant::now() < deadline && !inside.is_finished(),
            "{test}: the image stayed {status}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!("image upload (inside the box): {:?}", t.elapsed());
    let md5 = std::process::Command::new("md5sum")
        .arg(image)
        .output()
        .unwrap();
    let md5 = String::from_utf8_lossy(&md5.stdout);
    let checksum = must(&["image", "show", image_id, "-f", "value", "-c", "checksum"]);
    assert_eq!(checksum.trim(), md5.split_whitespace().next().unwrap());
    let shown = must(&["image", "show", image_id, "-f", "json"]);
    assert!(!shown.contains("kernel_id"), "{shown}");
    must(&[
        "flavor",
        "create",
        "--vcpus",
        "1",
        "--ram",
        "1024",
        "--disk",
        "2",
        "cloud.small",
    ]);
    let key_file = home.path().join("key.pub");
    let key = box_support::made_up_public_key(KEY_COMMENT);
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    must(&[
        "keypair",
        "create",
        "--public-key",
        key_file.to_str().unwrap(),
        "box",
    ]);
    let user_data = home.path().join("user-data");
    std::fs::write(
        &user_data,
        "#cloud-config\n\
runcmd:\n\
  - [sh, -c, 'echo \"VIRGA-CLOUD-RUNCMD host=$(hostname) user=$(id -un debian)\" >/dev/console']\n\
  - [sh, -c, 'echo \"VIRGA-CLOUD-KEY $(cat /home/debian/.ssh/authorized_keys)\" >/dev/console']\n",
    )
    .unwrap();

    let t = Instant::now();
    let server = must(&[
        "server",
        "create",
        "--image",
        "debian",
        "--flavor",
        "cloud.small",
        "--key-name",
        "box",
        "--user-data",
        user_data.to_str().unwrap(),
        HOSTNAME,
        "-f",
        "value",
        "-c",
        "id",
    ]);
    let id = server.trim().to_owned();
    loop {
        let shown = must(&["server", "show", &id, "-f", "json"]);
        let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
        match shown["status"].as_str() {
            Some("ACTIVE") => break,
            Some("BUILD") if t.elapsed() < Duration::from_secs(600) => {
                std::thread::sleep(Duration::from_millis(500))
            }
            _ => panic!("{test}: the server did not go ACTIVE: {shown:#}"),
        }
    }
    let active = t.elapsed();
    eprintln!("server create -> ACTIVE: {active:?}");
    // The console as the client sees it, until cloud-init says it finished.
    let mut log = String::new();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    let marks = [
        ("multi-user.target", "Multi-User System"),
        ("runcmd", "VIRGA-CLOUD-KEY"),
        ("cloud-init finished", " finished at "),
    ];
    while seen.len() < marks.len() {
        assert!(
            Instant::now() < deadline,
            "{test}: the guest did not finish:\n{log}"
        );
        assert!(!inside.is_finished(), "{test}: the box ended early:\n{log}");
        std::thread::sleep(Duration::from_secs(3));
        log = os(&["console", "log", "show", &id]).unwrap_or_default();
        for (what, text) in &marks[seen.len()..] {
            if log.contains(text) && !seen.iter().any(|(w, _)| w == what) {
                seen.push((*what, t.elapsed()));
            }
        }
    }
    eprintln!("server create -> (in seconds, polled every 3 s): {seen:?}");

    // The image's kernel, its root found by PARTUUID and mounted read-write.
    assert!(log.contains("Linux version 6."), "{log}");
    assert!(
        log.contains("root=PARTUUID=5b0ed9f6-6c3e-4a41-9d0a-7a1f0e2c9b11 rw"),
        "{log}"
    );
    assert!(
        log.contains("EXT4-fs (vda1): mounted filesystem 2c4b3f0e-9a7d-4c61-8e55-0d3b6f1a7e21"),
        "{log}"
    );
    let line = |what: &str| log.lines().find(|l| l.contains(what)).map(str::trim);
    // cloud-init read the config drive, set the host name and installed the key ...
    assert!(
        log.lines()
            .any(|l| l.contains(" finished at ") && l.contains("Datasource DataSourceConfigDrive")),
        "datasource:\n{log}"
    );
    assert_eq!(
        line("VIRGA-CLOUD-RUNCMD"),
        Some(format!("VIRGA-CLOUD-RUNCMD host={HOSTNAME} user=debian").as_str()),
        "{log}"
    );
    assert_eq!(
        line("VIRGA-CLOUD-KEY"),
        Some(format!("VIRGA-CLOUD-KEY {key}").as_str()),
        "{log}"
    );
    // ... and systemd started a getty on the serial console.
    assert!(log.contains("Serial Getty on ttyS0"), "{log}");

    let t = Instant::now();
    must(&["server", "delete", "--wait", &id]);
    eprintln!("server delete --wait: {:?}", t.elapsed());
    let listed = must(&["server", "list", "-f", "value", "-c", "ID"]);
    assert!(listed.trim().is_empty(), "{listed}");
}
