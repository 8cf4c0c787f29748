import VigilAddressing
import VigilWire

/// Traffic selector narrowing (RFC 7296 §2.9): the responder keeps the part of each proposed selector that its
/// policy allows; the initiator accepts only selectors inside what it proposed.
enum TrafficSelectorNarrowing {
    /// The intersections of the proposed selectors with the allowed prefixes. Only results that are whole prefixes
    /// are kept (the kernel and the daemon speak prefixes); an empty result means TS_UNACCEPTABLE.
    static func narrow(_ proposed: [IKEv2.TrafficSelector], to allowed: [IPPrefix]) -> [IKEv2.TrafficSelector] {
        var result: [IKEv2.TrafficSelector] = []
        for selector in proposed {
            for prefix in allowed where prefix.family == selector.startAddress.family {
                let start = max(selector.startAddress, prefix.first)
                let end = min(selector.endAddress, prefix.last)
                guard start <= end else { continue }
                let narrowed = IKEv2.TrafficSelector(
                    ipProtocol: selector.ipProtocol, startPort: selector.startPort, endPort: selector.endPort,
                    startAddress: start, endAddress: end
                )
                if narrowed.prefix != nil, !result.contains(narrowed) { result.append(narrowed) }
            }
        }
        return result
    }

    /// True when every selector lies inside one of the prefixes.
    static func isWithin(_ selectors: [IKEv2.TrafficSelector], _ prefixes: [IPPrefix]) -> Bool {
        !selectors.isEmpty && selectors.allSatisfy { selector in
            prefixes.contains { $0.contains(selector.startAddress) && $0.contains(selector.endAddress) }
        }
    }

    static func prefixes(_ selectors: [IKEv2.TrafficSelector]) -> [IPPrefix] {
        selectors.compactMap(\.prefix)
    }
}
