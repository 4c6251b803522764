/* test_hash: FNV-1a (core/hash) against values computed outside slex.
 * The standard basis values are FNV's published test vectors ("a", "foobar"); the rest were
 * computed with an independent Python implementation:
 *     def fnv(b, h):
 *         for c in b: h = ((h ^ c) * 1099511628211) & 0xffffffffffffffff
 *         return h
 * They pin what existing files depend on: the store fingerprint (legacy basis, as hex), the
 * k-means checkpoint checksum (standard basis) and the slex-synth sentence split
 * (splitmix64 of the legacy-basis hash, % 100). */
#include <string.h>

#include "check.h"
#include "core/fileio.h"
#include "core/hash.h"
#include "corpus/synth.h"

int main(void) {
    /* FNV's offset basis: the published test vectors. */
    CHECK(slex_fnv1a64(SLEX_FNV1A_BASIS, "", 0) == 0xcbf29ce484222325ULL, "empty");
    CHECK(slex_fnv1a64_str(SLEX_FNV1A_BASIS, "a") == 0xaf63dc4c8601ec8cULL, "a");
    CHECK(slex_fnv1a64_str(SLEX_FNV1A_BASIS, "foobar") == 0x85944171f73967e8ULL, "foobar");
    const char *utf8 = "\xe4\xb8\xad\xe6\x96\x87 utt/001.wav";
    CHECK(slex_fnv1a64(SLEX_FNV1A_BASIS, utf8, strlen(utf8)) == 0xe59c56d4bebb8a8eULL, "bytes >= 0x80");

    /* slex's historical basis (store fingerprints, synth split, align index). */
    CHECK(SLEX_FNV1A_SLEX_BASIS == 0x14650fb0739d0383ULL, "legacy basis");
    CHECK(slex_fnv1a64_str(SLEX_FNV1A_SLEX_BASIS, "a") == 0x44bd8ad473cd9906ULL, "legacy a");
    CHECK(slex_fnv1a64_str(SLEX_FNV1A_SLEX_BASIS, "foobar") == 0x88fad7c0a8ff07f2ULL, "legacy foobar");
    CHECK(slex_fnv1a64_str(SLEX_FNV1A_SLEX_BASIS, utf8) == 0xe329a883563f97a8ULL, "legacy bytes >= 0x80");

    /* Data in pieces gives the hash of the whole. */
    uint64_t h = slex_fnv1a64(SLEX_FNV1A_BASIS, "foo", 3);
    CHECK(slex_fnv1a64(h, "bar", 3) == 0x85944171f73967e8ULL, "in pieces");

    char hex[17];
    slex_fingerprint_hex("{\"dim\":39}", hex);
    CHECK(!strcmp(hex, "7fa7d46d3093f8a3"), "store fingerprint: %s", hex);
    slex_fingerprint_hex("", hex);
    CHECK(!strcmp(hex, "14650fb0739d0383"), "store fingerprint of nothing: %s", hex);

    /* The train/test sentence split of slex-synth: hash % 100 of these sentences is 0, 20, 87. */
    slex_synth_options o;
    slex_synth_options_default(&o);
    CHECK(slex_synth_sentence_is_test(&o, "Never trust a computer you cannot throw out a window."), "split 0");
    CHECK(!slex_synth_sentence_is_test(&o, "The quick brown fox."), "split 20 (10 %%)");
    o.test_sentence_percent = 21;
    CHECK(slex_synth_sentence_is_test(&o, "The quick brown fox."), "split 20 (21 %%)");
    o.test_sentence_percent = 20;
    CHECK(!slex_synth_sentence_is_test(&o, "The quick brown fox."), "split 20 (20 %%)");
    o.test_sentence_percent = 87;
    CHECK(!slex_synth_sentence_is_test(&o, "Hello, world."), "split 87 (87 %%)");
    o.test_sentence_percent = 88;
    CHECK(slex_synth_sentence_is_test(&o, "Hello, world."), "split 87 (88 %%)");
    return check_finish("test_hash");
}
