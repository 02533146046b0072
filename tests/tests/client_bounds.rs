//! The binary port's bounds (issue 17): one connection over the per-core
//! bound is closed at accept, an idle connection is closed after its idle
//! timeout, a client sending a frame too slowly is told so and closed, and
//! through all of it the node serves everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use settle_codec::{FrameBuf, FrameReader, MessageKind, ReadStatus, TxResult};
use settle_tests::{http_request, submit_one, write_participants, Node};

/// Reads until the node closes the connection (or `within` passes: then
/// the test fails); returns what it sent before closing and how long it took.
fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (out, started.elapsed()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (out, started.elapsed())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
        assert!(
            started.elapsed() < within,
            "still open after {within:?} (got {} bytes)",
            out.len()
        );
    }
}

/// The text of the one error frame in `bytes`.
fn error_text(bytes: &[u8]) -> String {
    let mut reader = FrameReader::new();
    reader.spare()[..bytes.len()].copy_from_slice(bytes);
    reader.commit(bytes.len());
    match reader.next_frame().unwrap() {
        ReadStatus::Frame(frame) => {
            assert_eq!(frame.kind(), MessageKind::ErrorResponse);
            String::from_utf8_lossy(frame.body()).into_owned()
        }
        ReadStatus::NeedMore(_) => panic!("no whole error frame: {bytes:?}"),
    }
}

#[test]
fn over_its_bounds_a_client_is_closed_and_the_node_serves_the_others() {
    const CONNECTIONS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let participants = write_participants(dir.path(), 4).unwrap();
    let connections = CONNECTIONS.to_string();
    let node = Node::start_with(
        &dir.path().join("data"),
        Some(&participants),
        true,
        // One core: the bound is per core, and SO_REUSEPORT would spread
        // these connections over several.
        1,
        &[
            "--client-connections-max",
            &connections,
            "--client-idle-timeout-ms",
            "3000",
            "--client-frame-timeout-ms",
            "1000",
        ],
    )
    .unwrap();

    // The bound's worth of idle connections, then one more: closed at once.
    let mut held: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| TcpStream::connect(node.listen).unwrap())
        .collect();
    // Each is admitted when the node accepts it; a request answered on the
    // last one shows they all were.
    let mut probe = FrameBuf::new();
    probe
        .push(1, &settle_codec::LookupRequest { ids: vec![1] })
        .unwrap();
    let last = held.last_mut().unwrap();
    last.write_all(probe.as_slice()).unwrap();
    last.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = [0u8; 64];
    assert!(last.read(&mut answer).unwrap() > 0, "the 4th is served");
    let mut extra = TcpStream::connect(node.listen).unwrap();
    let (_, took) = read_until_closed(&mut extra, Duration::from_secs(10));
    eprintln!("the connection over the bound was closed after {took:?}");

    // Idle connections are closed after their timeout (3 s), not before
    // about that long; then there is room again.
    let started = Instant::now();
    for stream in &mut held {
        read_until_closed(stream, Duration::from_secs(30));
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "closed after {:?}, before the idle timeout",
        started.elapsed()
    );
    assert_eq!(submit_one(node.listen, 1), TxResult::Created);

    // A frame sent too slowly: its first half, then nothing. The node says
    // why and closes, about a second later.
    let mut frame = FrameBuf::new();
    frame
        .push(2, &settle_codec::LookupRequest { ids: vec![1, 2, 3] })
        .unwrap();
    let half = frame.as_slice().len() / 2;
    let mut slow = TcpStream::connect(node.listen).unwrap();
    slow.write_all(&frame.as_slice()[..half]).unwrap();
    let (said, took) = read_until_closed(&mut slow, Duration::from_secs(30));
    let text = error_text(&said);
    assert!(
        text.contains("must arrive whole within"),
        "{text} (after {took:?})"
    );

    // The HTTP port, the same bounds: the bound's worth of connections,
    // one more closed at once, the idle ones closed after their timeout.
    let http = node.http.expect("an HTTP port");
    let mut held: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| TcpStream::connect(http).unwrap())
        .collect();
    let mut extra = TcpStream::connect(http).unwrap();
    read_until_closed(&mut extra, Duration::from_secs(10));
    for stream in &mut held {
        read_until_closed(stream, Duration::from_secs(30));
    }
    // Slowloris: headers begun and never finished; closed after the
    // request timeout (1 s), not at once.
    let mut slow = TcpStream::connect(http).unwrap();
    slow.write_all(b"GET /v1/participants HTTP/1.1\r\nhost: settle\r\n")
        .unwrap();
    let (_, took) = read_until_closed(&mut slow, Duration::from_secs(30));
    assert!(took >= Duration::from_millis(500), "closed after {took:?}");
    let (status, body) = http_request(http, "GET", "/v1/participants", None).unwrap();
    assert_eq!(status, 200, "{body}");

    // Through it all the node served and serves everyone else.
    for id in 2..=10 {
        assert_eq!(submit_one(node.listen, id), TxResult::Created);
    }

    // Each refusal was counted, by port (cores publish every 250 ms).
    let refused = |port: &str| -> f64 {
        let (status, body) = http_request(http, "GET", "/metrics", None).unwrap();
        assert_eq!(status, 200, "{body}");
        let series = format!("settle_connections_refused_total{{port=\"{port}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {body}"))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while refused("binary") < 1.0 || refused("http") < 1.0 {
        assert!(Instant::now() < deadline, "refusals not counted");
        std::thread::sleep(Duration::from_millis(100));
    }
}
