// cxxalloc: a C++ program's allocation pattern, all through operator new and delete.
//
// Rounds of: fill a std::unordered_map of std::string keys to std::vector<uint32_t>
// values and a std::list of std::string, erase every other key in hash order, look up
// every key, then clear everything.  Strings longer than the small-string buffer, node
// allocations of the map and the list, and vector growth give the usual mix of small,
// short-lived objects of many sizes.  The checksum covers what every round found.
//
// usage: cxxalloc [rounds [keys]]  (defaults 40 100000); prints checksum and ops/s
// (ops: inserts, erases and lookups).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

static unsigned long arg(int argc, char **argv, int i, unsigned long dflt)
{
    return i < argc ? std::strtoul(argv[i], nullptr, 10) : dflt;
}

int main(int argc, char **argv)
{
    unsigned long rounds = arg(argc, argv, 1, 40), keys = arg(argc, argv, 2, 100000);
    uint64_t checksum = 0, ops = 0;
    auto start = std::chrono::steady_clock::now();
    for (unsigned long r = 0; r < rounds; r++) {
        std::unordered_map<std::string, std::vector<uint32_t>> map;
        std::list<std::string> log;
        for (unsigned long k = 0; k < keys; k++) {
            std::string key = "key:" + std::to_string(r) + ":" + std::to_string(k * 2654435761u % 1000003);
            auto &v = map[key];
            for (uint32_t j = 0; j < k % 13; j++)
                v.push_back(static_cast<uint32_t>(k + j));
            if (k % 4 == 0)
                log.push_back(key + std::string(k % 40, '#'));
            ops++;
        }
        bool drop = false;
        for (auto it = map.begin(); it != map.end(); ops++) {
            if ((drop = !drop))
                it = map.erase(it);
            else
                ++it;
        }
        for (unsigned long k = 0; k < keys; k++, ops++) {
            auto it = map.find("key:" + std::to_string(r) + ":" + std::to_string(k * 2654435761u % 1000003));
            if (it != map.end())
                for (uint32_t x : it->second)
                    checksum += x;
        }
        for (const auto &s : log)
            checksum = checksum * 31 + s.size();
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("checksum: %016llx\n", static_cast<unsigned long long>(checksum));
    std::printf("ops/s: %.0f\n", static_cast<double>(ops) / secs);
    std::printf("ops: %llu\n", static_cast<unsigned long long>(ops));
    return 0;
}
