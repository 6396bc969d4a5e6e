//! `virga-vmm`: one process per guest on KVM.
