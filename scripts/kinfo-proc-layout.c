/* The layout of macOS's `struct kinfo_proc` that src/lock/liveness.rs `parse_kinfo_proc` reads
 * (a 64-bit process; the same on arm64 and x86_64), checked against the SDK headers zig ships.
 * scripts/macos-link.sh compiles it for both Apple targets; a failed assertion fails the step. */
#include <stddef.h>
#include <sys/types.h>
#include <sys/proc.h>
#include <sys/sysctl.h>

_Static_assert(sizeof(struct kinfo_proc) == 648, "KINFO_PROC_SIZE");
_Static_assert(offsetof(struct kinfo_proc, kp_proc.p_starttime.tv_sec) == 0,
               "kp_proc.p_starttime.tv_sec at 0");
_Static_assert(sizeof(((struct kinfo_proc *)0)->kp_proc.p_starttime.tv_sec) == 8,
               "kp_proc.p_starttime.tv_sec is an i64");
_Static_assert(offsetof(struct kinfo_proc, kp_proc.p_stat) == 36, "kp_proc.p_stat at 36");
_Static_assert(sizeof(((struct kinfo_proc *)0)->kp_proc.p_stat) == 1, "kp_proc.p_stat is a char");
_Static_assert(offsetof(struct kinfo_proc, kp_proc.p_pid) == 40, "kp_proc.p_pid at 40");
_Static_assert(sizeof(((struct kinfo_proc *)0)->kp_proc.p_pid) == 4, "kp_proc.p_pid is an i32");
_Static_assert(SZOMB == 5, "SZOMB");
