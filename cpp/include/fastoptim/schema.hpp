// What a rule declares, once, about its hyper-parameters and its state. The Python layer builds
// each group's row of doubles, its checks and its list of state slots from these declarations
// (`_core.rules()`), and C++ users set a rule's Hyper by name, starting from its defaults.
//
// Plain data, outside the per-target namespaces: the same declarations serve every target.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace fastoptim {

inline constexpr double kUnbounded = std::numeric_limits<double>::infinity();

// The values a hyper-parameter may take: [low, high], either end open.
struct Range {
    double low = -kUnbounded, high = kUnbounded;
    bool low_open = false, high_open = false;

    constexpr bool contains(double x) const {
        return (low_open ? x > low : x >= low) && (high_open ? x < high : x <= high);
    }
};

constexpr Range any_real() { return {}; }
constexpr Range at_least(double low) { return {low, kUnbounded, false, false}; }
constexpr Range above(double low) { return {low, kUnbounded, true, false}; }
constexpr Range closed(double low, double high) { return {low, high, false, false}; }
constexpr Range open(double low, double high) { return {low, high, true, true}; }
constexpr Range half_open(double low, double high) { return {low, high, false, true}; }  // [low, high)

enum class FieldKind : std::uint8_t { real, flag };  // a flag is 0 or 1 in the row, a bool in Python

// One hyper-parameter: a member of the rule's Hyper (all doubles, in declaration order).
struct Field {
    const char* name;          // the Hyper member, as C++ users write it
    const char* key;           // where Python keeps it in a group: "eps", or "betas[0]" for an element
    std::size_t index;         // its position in Hyper, which must be its position in the schema
    double default_value;      // what Hyper() holds, and torch's default where torch has the rule
    FieldKind kind;
    Range range;
    const char* fallback;      // the key read when a group lacks `key` (AdaBound's initial_lr: lr), or null
};

// Where a state slot's elements live. Only like_param exists in the kernels so far; the others
// are declared so that rules with factored or per-row state can say so.
enum class SlotShape : std::uint8_t { like_param, per_row, per_column, scalar };

// One state array per parameter.
struct Slot {
    const char* name;                   // as in the state dict (torch's name where torch has the rule)
    const char* needed_when = nullptr;  // a field whose nonzero value makes the slot exist; null: always
    bool seeded = false;                // a fresh group's first step writes it without reading it
    SlotShape shape = SlotShape::like_param;
    bool nonnegative = false;           // never below zero (a second moment): 8-bit state codes it unsigned
};

// A slot that is never below zero (a second moment, a sum of squares).
constexpr Slot nonnegative_slot(const char* name, const char* needed_when = nullptr, bool seeded = false) {
    return Slot{name, needed_when, seeded, SlotShape::like_param, true};
}

// The schema is in Hyper's member order, has one entry per member, and every default lies in
// its range: checked at compile time by each rule (static_assert(schema_matches<...>(fields))).
template <class Hyper, std::size_t N>
constexpr bool schema_matches(const std::array<Field, N>& fields) {
    if (sizeof(Hyper) != N * sizeof(double)) return false;
    for (std::size_t k = 0; k < N; ++k) {
        if (fields[k].index != k) return false;
        if (!fields[k].range.contains(fields[k].default_value)) return false;
        if (fields[k].kind == FieldKind::flag && fields[k].default_value != 0.0 && fields[k].default_value != 1.0)
            return false;
    }
    return true;
}

// A slot's needed_when names a field of the schema.
template <std::size_t N, std::size_t S>
constexpr bool slots_match(const std::array<Field, N>& fields, const std::array<Slot, S>& slots) {
    for (std::size_t s = 0; s < S; ++s) {
        if (slots[s].needed_when == nullptr) continue;
        bool found = false;
        for (std::size_t k = 0; k < N; ++k) {
            const char *a = slots[s].needed_when, *b = fields[k].name;
            while (*a != '\0' && *a == *b) ++a, ++b;
            found = found || (*a == '\0' && *b == '\0');
        }
        if (!found) return false;
    }
    return true;
}

}  // namespace fastoptim

// One schema entry for the member `member` of `Hyper`, kept by Python under `key`.
#define FASTOPTIM_FIELD(Hyper, member, key, range) FASTOPTIM_FIELD_OR(Hyper, member, key, range, nullptr)
// The same, read from the key `fallback` when a group lacks `key`.
#define FASTOPTIM_FIELD_OR(Hyper, member, key, range, fallback)                                   \
    ::fastoptim::Field {                                                                          \
        #member, key, offsetof(Hyper, member) / sizeof(double), Hyper().member,                   \
            ::fastoptim::FieldKind::real, range, fallback                                         \
    }
// A member that is a switch: 0 or 1 in the row, a bool in Python.
#define FASTOPTIM_FLAG(Hyper, member, key)                                                        \
    ::fastoptim::Field {                                                                          \
        #member, key, offsetof(Hyper, member) / sizeof(double), Hyper().member,                   \
            ::fastoptim::FieldKind::flag, ::fastoptim::closed(0.0, 1.0), nullptr                  \
    }
