//! What a party reads from the network: a frame body, a session control
//! message in it, and the plan a request carries (checked and scheduled as a
//! server does before running it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tfe_run::remote::{Control, Request};
use tfe_run::transport::wire::Frame;

fuzz_target!(|bytes: &[u8]| {
    let Ok(frame) = Frame::decode(bytes.to_vec()) else { return };
    assert_eq!(Frame::decode(frame.encode()).ok(), Some(frame.clone()));
    let Frame::Control(json) = frame else { return };
    let Ok(Control::Hello { request: Some(request), .. }) = Control::decode(&json, "fuzz") else { return };
    let plan = match *request {
        Request::Predict { plan, .. } | Request::Deploy { plan, .. } => plan,
        _ => return,
    };
    if plan.check_consistent().is_ok() {
        let _ = tfe_run::runtime::Schedule::new(&plan);
    }
});
