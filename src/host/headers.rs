//! The proxy-wasm serialized header map (ABI 0.2.1), read in place.
//!
//! Layout: a little-endian `u32` count, then per pair the `u32` lengths of
//! name and value, then each name and each value followed by a NUL byte.
//!
//! Outside wasm32 only the reader is built. The one unsafe block of the
//! crate is here: the raw host call that hands the map over in one buffer.

#[cfg(target_arch = "wasm32")]
use proxy_wasm::types::{MapType, Status};

fn u32_at(buf: &[u8], at: usize) -> Option<usize> {
    let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(bytes)).ok()
}

/// The (name, value) pairs of a serialized map, borrowed from it; `None`
/// when the buffer does not hold what its counts say. An empty buffer is
/// an empty map.
pub fn pairs(buf: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if buf.is_empty() {
        return Some(Vec::new());
    }
    let count = u32_at(buf, 0)?;
    let mut sizes = 4usize;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > buf.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let (k, v) = (u32_at(buf, sizes)?, u32_at(buf, sizes + 4)?);
        sizes += 8;
        let name = buf.get(data..data.checked_add(k)?)?;
        data = data.checked_add(k)?.checked_add(1)?;
        let value = buf.get(data..data.checked_add(v)?)?;
        data = data.checked_add(v)?.checked_add(1)?;
        out.push((name, value));
    }
    Some(out)
}

#[cfg(target_arch = "wasm32")]
extern "C" {
    // The import the SDK's `get_map_bytes` calls, with plain integers
    // (a status outside the SDK's enum cannot become an invalid value).
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// The request's header map as the host serialized it, in one buffer. The
/// SDK's reader copies every name and value into an allocation of its own
/// (two per header, every request); `headers::pairs` reads this in place.
/// `None` when the host refuses.
#[cfg(target_arch = "wasm32")]
pub(crate) fn request_header_map() -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the call the SDK makes. The host answers with a buffer it got
    // from this module's `proxy_on_memory_allocate` (the SDK's allocator: a
    // leaked `Vec<u8>` of capacity `size`) and that size, or a null pointer.
    let status = unsafe {
        proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size)
    };
    if status != Status::Ok as u32 {
        return None;
    }
    if data.is_null() {
        return Some(Vec::new());
    }
    // SAFETY: the buffer is ours from here, as the SDK takes it.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serialize(map: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = (map.len() as u32).to_le_bytes().to_vec();
        for (k, v) in map {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in map {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    #[test]
    fn reads_what_the_host_writes() {
        let map: &[(&str, &[u8])] = &[
            (":path", b"/a?b"),
            ("authorization", b"Bearer x.y.z"),
            ("empty", b""),
            ("x-bin", &[0x80, 0xff, 0]),
        ];
        let buf = serialize(map);
        let got = pairs(&buf).unwrap();
        let want: Vec<(&[u8], &[u8])> = map.iter().map(|(k, v)| (k.as_bytes(), *v)).collect();
        assert_eq!(got, want);
        assert_eq!(pairs(&[]).unwrap(), vec![]);
        assert_eq!(pairs(&serialize(&[])).unwrap(), vec![]);
    }

    #[test]
    fn a_short_or_lying_buffer_is_refused() {
        let buf = serialize(&[("name", b"value"), ("n2", b"v2")]);
        for cut in 1..buf.len() - 1 {
            assert_eq!(pairs(&buf[..cut]), None, "cut at {cut}");
        }
        let mut huge = buf.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(pairs(&huge), None);
        let mut long = buf.clone();
        long[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(pairs(&long), None);
    }
}
