//! Faults between the SDK and an endpoint: what the timeouts and retries of `sdk_config` do.

/// An endpoint that accepts connections and never answers (an emulator stopped with SIGSTOP):
/// the call ends within its timeouts, with a message that names the endpoint, instead of hanging.
#[test]
fn an_endpoint_that_stops_answering_times_out_and_is_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    // Accept and hold every connection, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let timeouts = vending_aws::Timeouts {
        connect: std::time::Duration::from_secs(1),
        read: std::time::Duration::from_secs(1),
        attempt: std::time::Duration::from_secs(2),
        operation: std::time::Duration::from_secs(4),
    };
    let started = std::time::Instant::now();
    let (done, result) = std::sync::mpsc::channel();
    let target = vending_aws::Target::Local { endpoint: endpoint.clone() };
    std::thread::spawn(move || {
        let message = crate::block_on(async {
            let config = vending_aws::sdk_config_with("eu-west-1", &target, &timeouts).await;
            let s3 = vending_aws::s3::client(&config, true);
            let error = s3.head_bucket().bucket("any").send().await.unwrap_err();
            vending_aws::describe_error(&error)
        });
        let _ = done.send(message);
    });
    // Without timeouts the call would wait forever: fail instead of hanging the test run.
    let message = result.recv_timeout(std::time::Duration::from_secs(30)).expect("the call hung");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    assert!(message.contains(&endpoint) && message.contains("did not answer"), "{message}");
}
