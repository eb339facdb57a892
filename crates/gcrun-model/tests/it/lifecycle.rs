use RunStatus::*;
use gcrun_model::{RunStatus, WebhookStatus};

/// The whole table of legal handler transitions, written out once more by
/// hand: a change to the state machine must change this test too.
const LEGAL: &[(RunStatus, RunStatus)] = &[
    (Accepted, Validated),
    (Accepted, Rejected),
    (Accepted, Dead),
    (Validated, Submitted),
    (Validated, Failed),
    (Validated, TimedOut),
    (Validated, Dead),
    (Submitted, Queued),
    (Submitted, Running),
    (Submitted, Completed),
    (Submitted, Failed),
    (Submitted, TimedOut),
    (Submitted, Dead),
    (Queued, Running),
    (Queued, Completed),
    (Queued, Failed),
    (Queued, TimedOut),
    (Queued, Dead),
    (Running, Completed),
    (Running, Failed),
    (Running, TimedOut),
    (Running, Dead),
    // A cancel that was asked for ends any run that has not ended.
    (Accepted, Cancelled),
    (Validated, Cancelled),
    (Submitted, Cancelled),
    (Queued, Cancelled),
    (Running, Cancelled),
];

#[test]
fn every_pair_is_legal_exactly_when_the_table_says_so() {
    for from in RunStatus::ALL {
        for to in RunStatus::ALL {
            let legal = LEGAL.contains(&(from, to));
            assert_eq!(from.can_become(to), legal, "{from} -> {to}");
            match from.transition(to) {
                Ok(next) => assert!(legal && next == to),
                Err(e) => {
                    assert!(!legal);
                    assert_eq!((e.from, e.to), (from, to));
                    assert_eq!(e.to_string(), format!("illegal run transition {from} -> {to}"));
                }
            }
        }
    }
}

#[test]
fn terminal_states_have_no_way_out_but_requeue() {
    for s in RunStatus::ALL {
        let has_exit = RunStatus::ALL.iter().any(|&t| s.can_become(t));
        assert_eq!(s.is_terminal(), !has_exit, "{s}");
    }
    assert_eq!(Dead.requeue(), Ok(Accepted));
    assert_eq!(Rejected.requeue(), Ok(Accepted));
    for s in [Accepted, Validated, Submitted, Queued, Running, Completed, Failed, TimedOut, Cancelled] {
        assert!(s.requeue().is_err(), "{s} is not in the dead-letter set");
    }
}

#[test]
fn no_state_moves_to_itself() {
    for s in RunStatus::ALL {
        assert!(!s.can_become(s), "{s}");
    }
}

#[test]
fn statuses_round_trip_through_their_names() {
    for s in RunStatus::ALL {
        assert_eq!(s.as_str().parse::<RunStatus>(), Ok(s));
        assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
    }
    assert!("finished".parse::<RunStatus>().is_err());
}

#[test]
fn webhook_states() {
    use WebhookStatus::*;
    let all = [Pending, Delivered, Dead];
    let legal = [(Pending, Delivered), (Pending, Dead), (Dead, Pending)];
    for a in all {
        for b in all {
            assert_eq!(a.can_become(b), legal.contains(&(a, b)), "{a:?} -> {b:?}");
        }
    }
}
