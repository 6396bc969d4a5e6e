//! CPUID as a guest expects it: KVM's supported set, with per-vCPU APIC IDs and topology
//! (one thread per core, all vCPUs in one socket), the hypervisor bit, and no PMU.

use kvm_bindings::CpuId;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE: u32 = 0x4;
const LEAF_PMU: u32 = 0xa;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;

const ECX_HYPERVISOR: u32 = 1 << 31;
const ECX_TSC_DEADLINE: u32 = 1 << 24;
const EDX_HTT: u32 = 1 << 28;
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

/// Bits needed to number `n` things.
fn bits_for(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

/// Announces the LAPIC's TSC-deadline mode, which KVM emulates in the kernel when it has
/// `KVM_CAP_TSC_DEADLINE_TIMER` but leaves out of its supported CPUID (the VMM's to offer, as
/// Firecracker and Cloud Hypervisor do). With it Linux skips calibrating the LAPIC timer
/// against the PIT at boot (measured in the box: docs/kvmbox.md).
pub fn offer_tsc_deadline(cpuid: &mut CpuId) {
    for e in cpuid.as_mut_slice() {
        if e.function == LEAF_FEATURES {
            e.ecx |= ECX_TSC_DEADLINE;
        }
    }
}

/// Adjusts `cpuid` (KVM's supported entries) for vCPU `id` of `count`.
pub fn filter(cpuid: &mut CpuId, id: u32, count: u32) {
    for e in cpuid.as_mut_slice() {
        match e.function {
            LEAF_FEATURES => {
                e.ebx = (e.ebx & 0x0000_ffff) | (id << 24) | ((count.min(255)) << 16);
                e.ecx |= ECX_HYPERVISOR;
                if count > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            LEAF_CACHE => {
                // Cores per package - 1 in 31:26; threads sharing this cache - 1 in 25:14.
                let shared = if (e.eax >> 5) & 0x7 >= 3 {
                    count - 1
                } else {
                    0
                };
                e.eax = (e.eax & 0x3fff) | ((count - 1).min(63) << 26) | (shared.min(0xfff) << 14);
            }
            LEAF_PMU => {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
                e.edx = id;
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = (LEVEL_SMT << 8) | e.index;
                    }
                    1 => {
                        e.eax = bits_for(count);
                        e.ebx = count;
                        e.ecx = (LEVEL_CORE << 8) | e.index;
                    }
                    _ => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = e.index;
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ..Default::default()
        }
    }

    #[test]
    fn topology_and_ids_per_vcpu() {
        let entries = [entry(1, 0), entry(0xb, 0), entry(0xb, 1), entry(0xa, 0)];
        let mut c = CpuId::from_entries(&entries).unwrap();
        filter(&mut c, 2, 3);
        let s = c.as_slice();
        assert_eq!(s[0].ebx >> 24, 2);
        assert_eq!((s[0].ebx >> 16) & 0xff, 3);
        assert_ne!(s[0].ecx & ECX_HYPERVISOR, 0);
        assert_eq!((s[2].eax, s[2].ebx, s[2].edx), (2, 3, 2));
        assert_eq!(s[3].eax, 0);
        assert_eq!(bits_for(1), 0);
        assert_eq!(bits_for(4), 2);
        assert_eq!(bits_for(5), 3);
    }

    #[test]
    fn tsc_deadline_is_offered_in_leaf_1_only() {
        let entries = [entry(1, 0), entry(0xb, 0)];
        let mut c = CpuId::from_entries(&entries).unwrap();
        offer_tsc_deadline(&mut c);
        filter(&mut c, 0, 1);
        assert_ne!(c.as_slice()[0].ecx & ECX_TSC_DEADLINE, 0);
        assert_eq!(c.as_slice()[1].ecx & ECX_TSC_DEADLINE, 0);
    }
}
