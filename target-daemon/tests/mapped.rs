//! The mapped engine (`--io-engine mmap`, and `auto` for a fully allocated file on tmpfs):
//! every byte lands where a pwrite would put it, a read-only export is served from a
//! read-only mapping, a sparse file is not mapped by default, and a file that shrinks under
//! its mapping fails the requests it can no longer back instead of killing the daemon.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aoe_initiator::RequestError;
use common::{initiator, pattern, pipelined, summary_count, Daemon, Mount, TempDir};
use xblade_lab::{Lab, LabOptions};

const IMAGE_BYTES: u64 = 16 << 20;
/// The export window starts at this file sector: not page aligned.
const WINDOW_SECTORS: u64 = 9;

/// A tmpfs at `dir/mnt` and an image on it, fully allocated when `allocated`.
fn tmpfs_image(dir: &TempDir, allocated: bool) -> (Mount, PathBuf) {
    let mnt = Mount::new(
        &["-t", "tmpfs", "-o", "size=64M"],
        Path::new("tmpfs"),
        &dir.0.join("mnt"),
    );
    let image = mnt.0.join("disk.img");
    if allocated {
        fs::write(&image, vec![0x5a; IMAGE_BYTES as usize]).expect("allocated image");
    } else {
        fs::File::create(&image)
            .and_then(|f| f.set_len(IMAGE_BYTES))
            .expect("sparse image");
    }
    (mnt, image)
}

#[test]
fn a_fully_allocated_tmpfs_image_is_mapped_and_every_byte_lands_in_the_file() {
    require_root!();
    let lab = Lab::new("mapped", LabOptions::default()).expect("lab");
    let dir = TempDir::new("mapped");
    let (mnt, image) = tmpfs_image(&dir, true);
    let window = WINDOW_SECTORS.to_string();
    let daemon = Daemon::start(&lab, &dir, &image, &["--no-state", "-o", &window]);
    assert!(
        daemon.log().contains(", mmap"),
        "auto maps an allocated tmpfs image:\n{}",
        daemon.log()
    );
    let capacity = IMAGE_BYTES / 512 - WINDOW_SECTORS;
    let mut client = initiator(&lab, 500, 2);
    assert_eq!(client.capacity_sectors().expect("identify"), capacity);
    // 2-sector writes over the whole window, the last one ending at its last sector.
    let count = capacity / 2;
    let lba_of = |i: u64| i * 2;
    let write = |c: &mut aoe_initiator::Initiator, i: u64| {
        c.submit_write(lba_of(i), &pattern(lba_of(i), 3, 2), lba_of(i))
            .expect("submit write")
    };
    assert_eq!(pipelined(&mut client, 32, count, write, |_| {}), count);
    let read = |c: &mut aoe_initiator::Initiator, i: u64| {
        c.submit_read(lba_of(i), 2, lba_of(i)).expect("submit read")
    };
    let check = |c: &aoe_initiator::Completion<'_>| {
        assert!(c.data == &pattern(c.user, 3, 2)[..], "lba {}", c.user)
    };
    assert_eq!(pipelined(&mut client, 32, count, read, check), count);
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");

    // The file itself, read with pread: every write at its sector, nothing before the window.
    let file = fs::File::open(&image).expect("open image");
    let mut head = vec![0u8; WINDOW_SECTORS as usize * 512];
    file.read_exact_at(&mut head, 0).expect("read head");
    assert!(
        head.iter().all(|&b| b == 0x5a),
        "bytes before the window untouched"
    );
    let mut two = vec![0u8; 1024];
    for i in 0..count {
        file.read_exact_at(&mut two, (WINDOW_SECTORS + lba_of(i)) * 512)
            .expect("read back");
        assert!(
            two == pattern(lba_of(i), 3, 2),
            "file sector {}",
            WINDOW_SECTORS + lba_of(i)
        );
    }

    drop(file);

    // Read-only: a read-only mapping serves reads, and writes are refused as ever.
    let daemon = Daemon::start(
        &lab,
        &dir,
        &image,
        &["--no-state", "-r", "--io-engine", "mmap"],
    );
    assert!(daemon.log().contains(", mmap"), "{}", daemon.log());
    let mut client = initiator(&lab, 500, 2);
    client.read(WINDOW_SECTORS + 4, &mut two).expect("read");
    assert!(two == pattern(4, 3, 2));
    assert!(client.write(0, &[1; 1024]).is_err(), "read-only export");
    assert!(daemon.terminate(Duration::from_secs(10)).status.success());
    drop(mnt);
}

#[test]
fn a_sparse_tmpfs_image_is_not_mapped_by_default_and_a_disk_file_not_at_all() {
    require_root!();
    let lab = Lab::new("mapsparse", LabOptions::default()).expect("lab");
    let dir = TempDir::new("mapsparse");
    let (mnt, image) = tmpfs_image(&dir, false);
    let daemon = Daemon::start(&lab, &dir, &image, &["--no-state"]);
    assert!(
        daemon.log().contains(", sync"),
        "a sparse tmpfs image stays with preadv/pwritev:\n{}",
        daemon.log()
    );
    assert!(daemon.terminate(Duration::from_secs(10)).status.success());
    drop(mnt);

    // $TMPDIR is on a disk here: mmap is refused with the reason and the fix.
    let disk_image = dir.image("disk.img", IMAGE_BYTES);
    let out = lab
        .command_in_target(common::xblade_bin())
        .args([
            "--no-state",
            "--io-engine",
            "mmap",
            "1",
            "0",
            lab.target_if(),
        ])
        .arg(&disk_image)
        .output()
        .expect("run xblade");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("io_engine mmap needs a file on tmpfs or ramfs")
            && stderr.contains("use auto"),
        "{stderr}"
    );
}

#[test]
fn a_mapped_image_truncated_under_load_fails_what_it_lost_and_the_daemon_keeps_serving() {
    require_root!();
    let lab = Lab::new("maptrunc", LabOptions::default()).expect("lab");
    let dir = TempDir::new("maptrunc");
    let (mnt, image) = tmpfs_image(&dir, true);
    let daemon = Daemon::start(&lab, &dir, &image, &["--no-state"]);
    assert!(daemon.log().contains(", mmap"), "{}", daemon.log());
    let mut client = initiator(&lab, 500, 2);
    let half_sectors = IMAGE_BYTES / 512 / 2;
    for lba in [0, half_sectors - 2, half_sectors, half_sectors + 100] {
        client.write(lba, &pattern(lba, 4, 2)).expect("write");
    }
    // Another process shrinks the file to half: the mapping's upper half loses its pages.
    fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .and_then(|f| f.set_len(IMAGE_BYTES / 2))
        .expect("truncate");

    let mut two = vec![0u8; 1024];
    let err = client
        .read(half_sectors + 100, &mut two)
        .expect_err("the sectors are gone from the file");
    assert!(
        matches!(err.request_error(), Some(RequestError::Ata { .. })),
        "an ATA error, not a timeout: {err:?}"
    );
    // The rest is served (now with preadv), data intact, and so is a second failure.
    client
        .read(half_sectors - 2, &mut two)
        .expect("read below the cut");
    assert!(two == pattern(half_sectors - 2, 4, 2));
    client.read(0, &mut two).expect("read the first sectors");
    assert!(two == pattern(0, 4, 2));
    assert!(
        client.read(half_sectors, &mut two).is_err(),
        "past the new end"
    );
    client.identify().expect("identify");
    let log = daemon.log();
    assert!(log.contains("lost pages under its mapping"), "{log}");
    let exit = daemon.terminate(Duration::from_secs(10));
    assert!(exit.status.success(), "{exit:?}");
    let io_errors = summary_count(&exit.stdout, "disk i/o").expect("disk i/o counter");
    assert!(io_errors >= 2, "{}", exit.stdout);
    drop(mnt);
}
