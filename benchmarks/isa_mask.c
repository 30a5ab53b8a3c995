/* isa_mask.so: this process sees a CPU without AVX-512, VNNI or AMX, so every library dispatches its AVX2 kernels.
 *
 * Preloaded by benchmarks/isa_mask.py (LD_PRELOAD). Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, the
 * "cpuid_fault" flag in /proc/cpuinfo) makes each CPUID instruction raise SIGSEGV; the handler runs the real
 * CPUID with faulting briefly off, clears the hidden feature bits and steps over the instruction. torch, oneDNN,
 * MKL and ONNX Runtime's MLAS all read CPUID, so all of them pick the same kernels an AVX2 machine would run,
 * at this CPU's clock and caches. The setting is per thread and inherited by threads and forked children;
 * exec resets it, and LD_PRELOAD sets it again. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))
/* CPUID.(EAX=7,ECX=0): EBX AVX512F DQ IFMA PF ER CD BW VL; ECX AVX512_VBMI VBMI2 VNNI BITALG VPOPCNTDQ;
 * EDX AVX512_4VNNIW 4FMAPS VP2INTERSECT AMX_BF16 AVX512_FP16 AMX_TILE AMX_INT8. */
static const unsigned HIDE_7_0[4] = {
    0,
    BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31),
    BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14),
    BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25),
};
/* CPUID.(EAX=7,ECX=1): EAX AVX_VNNI AVX512_BF16 AMX_FP16 AVX_IFMA; EDX AVX_VNNI_INT8 AVX_NE_CONVERT. */
static const unsigned HIDE_7_1[4] = {BIT(4) | BIT(5) | BIT(21) | BIT(23), 0, 0, BIT(4) | BIT(5)};

static volatile long answered;

static void real_cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    greg_t *reg = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)reg[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) { /* a real fault: let it crash as it would have */
        signal(SIGSEGV, SIG_DFL);
        return;
    }
    unsigned leaf = (unsigned)reg[REG_RAX], sub = (unsigned)reg[REG_RCX], r[4];
    real_cpuid(leaf, sub, r);
    const unsigned *hide = leaf == 7 && sub == 0 ? HIDE_7_0 : leaf == 7 && sub == 1 ? HIDE_7_1 : NULL;
    for (int i = 0; hide && i < 4; i++) r[i] &= ~hide[i];
    reg[REG_RAX] = r[0];
    reg[REG_RBX] = r[1];
    reg[REG_RCX] = r[2];
    reg[REG_RDX] = r[3];
    reg[REG_RIP] += 2; /* CPUID is 0F A2 */
    answered++;
}

__attribute__((constructor)) static void isa_mask_init(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO;
    if (sigaction(SIGSEGV, &action, NULL) != 0 || syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        perror("isa_mask: CPUID faulting is not available (needs Linux on x86 with the cpuid_fault flag)");
        _exit(70);
    }
}

/* How many CPUID instructions this process had answered through the mask. */
long isa_mask_answered(void) { return answered; }

/* CPUID as the process sees it (through the mask), for the tests. */
void isa_mask_cpuid(unsigned leaf, unsigned sub, unsigned out[4]) {
    __cpuid_count(leaf, sub, out[0], out[1], out[2], out[3]);
}
