//! Property tests: random, truncated and oversized frames thrown at the
//! decode path in both directions. Nothing may panic, and nothing may
//! allocate in proportion to a length the peer merely claims.

use bytes::{BufMut, BytesMut};
use gatehouse_actors::pg::codec::{self, CodecError, HEADER_LEN};
use gatehouse_actors::pg::messages;
use gatehouse_actors::pg::tap::{ClientTap, TargetTap};
use proptest::prelude::*;

const LIMIT: usize = 1 << 16;

/// Walk a byte stream the way the relay does: cut frames, feed the taps.
fn walk(stream: &[u8]) -> Result<usize, CodecError> {
    let mut client = ClientTap::default();
    let mut target = TargetTap::new(10, Default::default());
    let mut at = 0;
    while let Some(len) = codec::frame_len(&stream[at..], LIMIT)? {
        assert!(len >= HEADER_LEN && at + len <= stream.len());
        let (tag, body) = (stream[at], &stream[at + HEADER_LEN..at + len]);
        let _ = client.observe(tag, body);
        target.observe(tag, body);
        at += len;
    }
    Ok(at)
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

const TAGS: &[u8] = b"QPBEDCSHXFdcfTDZNAR123nstIGKW";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = walk(&bytes);
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = codec::decode_initial(&mut buf);
    }

    #[test]
    fn well_framed_random_bodies_never_panic(
        frames in proptest::collection::vec(
            (proptest::sample::select(TAGS), proptest::collection::vec(any::<u8>(), 0..64)),
            0..16)
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(|(t, b)| frame(*t, b)).collect();
        prop_assert_eq!(walk(&stream), Ok(stream.len()));
    }

    #[test]
    fn truncated_streams_wait_or_fail_never_overread(
        frames in proptest::collection::vec(
            (proptest::sample::select(TAGS), proptest::collection::vec(any::<u8>(), 0..64)),
            1..8),
        cut in any::<prop::sample::Index>()
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(|(t, b)| frame(*t, b)).collect();
        let cut = cut.index(stream.len());
        let consumed = walk(&stream[..cut]).unwrap();
        prop_assert!(consumed <= cut);
    }

    #[test]
    fn claimed_lengths_are_bounded(tag in any::<u8>(), len in any::<i32>()) {
        let mut buf = vec![tag];
        buf.extend_from_slice(&len.to_be_bytes());
        match codec::frame_len(&buf, LIMIT) {
            Ok(None) => prop_assert!((4..=(LIMIT as i32 - 1)).contains(&len)),
            Ok(Some(_)) => prop_assert_eq!(len, 4),
            Err(CodecError::BadLength(_)) => prop_assert!(len < 4),
            Err(CodecError::TooLarge { .. }) => prop_assert!(len as usize + 1 > LIMIT),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    #[test]
    fn decoders_reject_or_accept_any_body(body in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = messages::parse(&body);
        let _ = messages::bind(&body);
        let _ = messages::execute(&body);
        let _ = messages::query(&body);
        let _ = messages::row_description(&body);
        let _ = messages::data_row(&body);
        let _ = messages::command_complete(&body);
        let _ = messages::error_fields(&body);
        let _ = messages::notification(&body);
        let _ = messages::function_call(&body);
    }

    #[test]
    fn startup_packets_round_trip(params in proptest::collection::vec(("[a-z_]{1,12}", "[ -~]{0,20}"), 0..6)) {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        buf.put_i32(codec::PROTOCOL_3_0);
        for (k, v) in &params {
            buf.put_slice(k.as_bytes()); buf.put_u8(0);
            buf.put_slice(v.as_bytes()); buf.put_u8(0);
        }
        buf.put_u8(0);
        let len = buf.len() as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let decoded = codec::decode_initial(&mut buf).unwrap().unwrap();
        let expected: Vec<(String, String)> = params.clone();
        prop_assert_eq!(decoded, codec::Initial::Startup { params: expected });
    }
}

#[test]
fn huge_claimed_counts_fail_fast() {
    // 32767 parameters and formats claimed inside a tiny Bind body.
    let body = b"\0\0\x7f\xff\0\0\x7f\xff";
    assert!(messages::bind(body).is_err());
    // A DataRow claiming a 2 GiB column in 10 bytes.
    let body = [0u8, 1, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4];
    assert!(messages::data_row(&body).is_err());
}
