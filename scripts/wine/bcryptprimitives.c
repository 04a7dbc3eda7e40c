/* For the release check under Wine only (scripts/release.sh --check), never shipped.
 * Rust's standard library (1.78 and later) takes random bytes from ProcessPrng in
 * bcryptprimitives.dll, which every Windows 10/11 and Server 2016+ has but Debian 12's Wine 8.0
 * does not. Placed beside astcti-server.exe in the check's folder, this stands in for it with
 * RtlGenRandom (advapi32's SystemFunction036), which Wine has. */
#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
