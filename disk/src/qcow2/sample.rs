//! A tiny valid qcow2 image built in memory, for tests here and in the crates above (the image
//! store's and the base cache's): `features = ["test-util"]`.

const CS: usize = 65536;

/// A small valid v3 image: header, refcount table, refcount block, L1, L2, one data cluster.
pub fn tiny_image() -> Vec<u8> {
    let mut img = vec![0u8; 6 * CS];
    let put32 =
        |img: &mut Vec<u8>, at: usize, v: u32| img[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let put64 =
        |img: &mut Vec<u8>, at: usize, v: u64| img[at..at + 8].copy_from_slice(&v.to_be_bytes());
    img[..4].copy_from_slice(b"QFI\xfb");
    put32(&mut img, 4, 3);
    put32(&mut img, 20, 16);
    put64(&mut img, 24, 1 << 20);
    put32(&mut img, 36, 1);
    put64(&mut img, 40, 3 * CS as u64);
    put64(&mut img, 48, CS as u64);
    put32(&mut img, 56, 1);
    put32(&mut img, 96, 4);
    put32(&mut img, 100, 112);
    put64(&mut img, CS, 2 * CS as u64);
    for c in 0..6 {
        img[2 * CS + 2 * c + 1] = 1;
    }
    put64(&mut img, 3 * CS, (4 * CS as u64) | 1 << 63);
    put64(&mut img, 4 * CS, (5 * CS as u64) | 1 << 63);
    img[5 * CS..6 * CS].fill(0xab);
    img
}
