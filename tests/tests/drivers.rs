//! The same Pact exchange on each io driver: io_uring (when the kernel has it) and epoll.

use rookery::config::DriverChoice;
use rookery_tests::*;
use serde_json::json;

fn exchange(driver: DriverChoice) {
    let addr = server_with(2, |c| c.driver = driver);
    let (mut a, _) = Client::pact(addr, "drivers");
    let (mut b, _) = Client::pact(addr, "drivers");
    b.call(json!({"type":"subscribe","data":"chat"}), "s");
    for i in 0..50 {
        a.send(json!({"type":"chat","data":i}));
    }
    for i in 0..50 {
        assert_eq!(b.recv_type("chat")["data"]["message"], i);
    }
}

#[test]
fn epoll_driver_serves_pact() {
    exchange(DriverChoice::Epoll);
}

#[test]
fn auto_driver_serves_pact() {
    exchange(DriverChoice::Auto);
}
