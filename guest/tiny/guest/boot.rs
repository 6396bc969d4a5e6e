//! PVH entry (32-bit, paging off), static identity page tables, long mode, interrupt stubs.
//!
//! The page tables are data in the ELF (the VMM's loader copies them), so the guest runs no
//! loop to build them: every guest instruction is costly where KVM emulates ring-0 code.

core::arch::global_asm!(
    r#"
    .section .note.pvh, "a"
    .p2align 2
    .long 4                     /* name size: "Xen\0" */
    .long 4                     /* descriptor size */
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start

    .section .text.boot, "ax"
    .code32
    .global pvh_start
pvh_start:
    cli
    movl %ebx, %esi             /* PVH: %ebx holds the hvm_start_info address */
    movw $0x3f0, %dx
    movb $1, %al                /* boot progress: 32-bit entry reached */
    outb %al, %dx
    lgdt gdt_ptr
    movl %cr4, %eax
    orl $0x620, %eax            /* PAE | OSFXSR | OSXMMEXCPT */
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx      /* EFER.LME */
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    andl $0xfffffffb, %eax      /* clear EM */
    orl $0x80000023, %eax       /* PG | NE | MP | PE */
    movl %eax, %cr0
    ljmp $0x08, $long_mode

    .code64
long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    leaq stack_top(%rip), %rsp
    movl %esi, %edi
    call tiny_main
1:  hlt
    jmp 1b

    /* PIT (IRQ 0): count and acknowledge. */
    .global irq_timer
irq_timer:
    pushq %rax
    lock incq TICKS(%rip)
    movb $0x20, %al
    outb %al, $0x20
    popq %rax
    iretq

    /* Other PIC lines (keyboard, COM1): acknowledge only; the main loop polls the devices. */
    .global irq_other
irq_other:
    pushq %rax
    movb $0x20, %al
    outb %al, $0xa0
    outb %al, $0x20
    popq %rax
    iretq

    /* CPU exceptions: nothing here expects one, so report it (with its vector) as a guest
       panic. One 16-byte stub per vector pushes the vector number. */
    .p2align 4
    .global exception_stubs
exception_stubs:
    .set vector, 0
    .rept 32
    .p2align 4
    pushq $vector
    jmp exception_common
    .set vector, vector + 1
    .endr
exception_common:
    popq %rdi                   /* vector */
    movq (%rsp), %rsi           /* faulting RIP, or the error code for vectors that push one */
    movq 8(%rsp), %rdx          /* faulting RIP when there is an error code */
    andq $-16, %rsp
    call tiny_exception
2:  hlt
    jmp 2b

    .section .rodata
    .p2align 3
gdt:
    .quad 0
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
gdt_ptr:
    .word gdt_ptr - gdt - 1
    .long gdt

    .section .data.pagetables, "aw"
    .p2align 12
pml4:
    .quad pdpt + 0x3
    .fill 511, 8, 0
pdpt:
    .quad pd + 0x3
    .quad pd + 0x1000 + 0x3
    .quad pd + 0x2000 + 0x3
    .quad pd + 0x3000 + 0x3
    .fill 508, 8, 0
pd:                             /* identity map of the first 4 GiB in 2 MiB pages */
    .set page, 0
    .rept 2048
    .quad page + 0x83
    .set page, page + 0x200000
    .endr

    .section .bss
    .p2align 4
stack_bottom:
    .skip 16384
stack_top:
    .text
"#,
    options(att_syntax)
);
