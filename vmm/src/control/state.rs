//! The VM's lifecycle as Cloud Hypervisor's API exposes it, as one pure function: which
//! action is allowed in which state, and where it leads. The control loop (mod.rs) asks it
//! before doing anything, so a refused action changes nothing.
//!
//! ```text
//!  (none) --create--> Created --boot--> Running --pause--> Paused
//!                        ^                |  ^   <--resume--  |
//!                        |      shutdown, |  | reboot         | shutdown
//!                        |      poweroff  v  |                v
//!                        +----boot---- Shutdown <-------------+
//!  delete: any state --> (none)
//!  snapshot: Paused --> Paused          restore: (none) --> Paused (or Running: resume)
//! ```

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum VmState {
    Created,
    Running,
    Shutdown,
    Paused,
}

/// What a client (or the guest) asks of the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    Boot,
    Pause,
    Resume,
    Shutdown,
    Reboot,
    PowerButton,
    /// `vm.nmi`: a non-maskable interrupt to every vCPU (running or paused: a paused one
    /// takes it when it resumes).
    Nmi,
    /// `vm.resize-disk`: a disk of a booted VM grows (running or paused).
    ResizeDisk,
    Delete,
    /// `vm.info`, `vm.counters`: reads.
    Inspect,
    /// `vm.snapshot`: a paused VM is written out and stays paused.
    Snapshot,
    /// `vm.restore`: a VM is built from a snapshot, paused.
    Restore,
    /// `vm.add-*`, `vm.remove-device`: in any state (a VM not running has its configuration
    /// changed; a running or paused one gets the device hot-added or removed).
    Hotplug,
}

impl Action {
    pub const ALL: [Action; 14] = [
        Action::Create,
        Action::Boot,
        Action::Pause,
        Action::Resume,
        Action::Shutdown,
        Action::Reboot,
        Action::PowerButton,
        Action::Nmi,
        Action::ResizeDisk,
        Action::Delete,
        Action::Inspect,
        Action::Snapshot,
        Action::Restore,
        Action::Hotplug,
    ];

    fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Boot => "boot",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Shutdown => "shut down",
            Action::Reboot => "reboot",
            Action::PowerButton => "press the power button of",
            Action::Nmi => "send an NMI to",
            Action::ResizeDisk => "resize a disk of",
            Action::Delete => "delete",
            Action::Inspect => "inspect",
            Action::Snapshot => "snapshot",
            Action::Restore => "restore",
            Action::Hotplug => "add or remove devices of",
        }
    }
}

/// Why an action was refused; each maps to the status Cloud Hypervisor's spec gives it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 404.
    #[error("cannot {} the VM: no VM is created (vm.create first)", .0.verb())]
    NotCreated(Action),
    /// 409.
    #[error("a VM is already created (vm.delete it first)")]
    AlreadyCreated,
    /// 405.
    #[error("cannot {} the VM: it is {state:?}{hint}", action.verb(), hint = hint(*action, *state))]
    WrongState { action: Action, state: VmState },
}

fn hint(action: Action, state: VmState) -> &'static str {
    match (action, state) {
        (Action::Boot, VmState::Running | VmState::Paused) => " (already booted)",
        (Action::Pause, VmState::Paused) => " (already paused)",
        (Action::Resume, VmState::Running) => " (not paused)",
        (Action::PowerButton, VmState::Paused) => " (resume it first)",
        (Action::Snapshot, VmState::Running) => " (vm.pause it first)",
        (_, VmState::Created | VmState::Shutdown) => " (not booted: vm.boot first)",
        _ => "",
    }
}

/// Where `action` takes a VM in `state` (`None`: no VM created), or why it is refused.
pub fn transition(state: Option<VmState>, action: Action) -> Result<Option<VmState>, Refusal> {
    use Action as A;
    use VmState as S;
    let Some(s) = state else {
        return match action {
            A::Create => Ok(Some(S::Created)),
            A::Restore => Ok(Some(S::Paused)),
            A::Delete => Ok(None),
            a => Err(Refusal::NotCreated(a)),
        };
    };
    let to = match (action, s) {
        (A::Create | A::Restore, _) => return Err(Refusal::AlreadyCreated),
        (A::Delete, _) => return Ok(None),
        (A::Inspect | A::Hotplug, s) => s,
        (A::Boot, S::Created | S::Shutdown) => S::Running,
        (A::Pause, S::Running) => S::Paused,
        (A::Resume, S::Paused) => S::Running,
        (A::Shutdown, S::Running | S::Paused) => S::Shutdown,
        (A::Reboot, S::Running | S::Paused) => S::Running,
        (A::PowerButton, S::Running) => S::Running,
        (A::Nmi | A::ResizeDisk, s @ (S::Running | S::Paused)) => s,
        (A::Snapshot, S::Paused) => S::Paused,
        (action, state) => return Err(Refusal::WrongState { action, state }),
    };
    Ok(Some(to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;
    use VmState as S;

    /// Every (state, action) pair, with what the spec says should happen.
    #[test]
    fn every_transition_allowed_or_refused() {
        let states = [
            None,
            Some(S::Created),
            Some(S::Running),
            Some(S::Paused),
            Some(S::Shutdown),
        ];
        let expected = |s: Option<S>, a: A| -> Result<Option<S>, &'static str> {
            match (s, a) {
                (None, A::Create) => Ok(Some(S::Created)),
                (None, A::Restore) => Ok(Some(S::Paused)),
                (None, A::Delete) | (Some(_), A::Delete) => Ok(None),
                (None, _) => Err("404"),
                (Some(_), A::Create | A::Restore) => Err("409"),
                (Some(S::Paused), A::Snapshot) => Ok(Some(S::Paused)),
                (Some(s), A::Inspect | A::Hotplug) => Ok(Some(s)),
                (Some(S::Created | S::Shutdown), A::Boot) => Ok(Some(S::Running)),
                (Some(S::Running), A::Pause) => Ok(Some(S::Paused)),
                (Some(S::Paused), A::Resume) => Ok(Some(S::Running)),
                (Some(S::Running | S::Paused), A::Shutdown) => Ok(Some(S::Shutdown)),
                (Some(S::Running | S::Paused), A::Reboot) => Ok(Some(S::Running)),
                (Some(S::Running), A::PowerButton) => Ok(Some(S::Running)),
                (Some(s @ (S::Running | S::Paused)), A::Nmi | A::ResizeDisk) => Ok(Some(s)),
                _ => Err("405"),
            }
        };
        let mut checked = 0;
        for s in states {
            for a in Action::ALL {
                let got = transition(s, a).map_err(|r| match r {
                    Refusal::NotCreated(_) => "404",
                    Refusal::AlreadyCreated => "409",
                    Refusal::WrongState { .. } => "405",
                });
                assert_eq!(got, expected(s, a), "{s:?} --{a:?}-->");
                checked += 1;
            }
        }
        assert_eq!(checked, 70);
    }

    #[test]
    fn refusals_say_what_to_do() {
        let m = |s, a| transition(s, a).unwrap_err().to_string();
        assert_eq!(
            m(None, A::Boot),
            "cannot boot the VM: no VM is created (vm.create first)"
        );
        assert_eq!(
            m(Some(S::Running), A::Resume),
            "cannot resume the VM: it is Running (not paused)"
        );
        assert_eq!(
            m(Some(S::Created), A::Pause),
            "cannot pause the VM: it is Created (not booted: vm.boot first)"
        );
        assert!(m(Some(S::Paused), A::Create).contains("already created"));
    }
}
