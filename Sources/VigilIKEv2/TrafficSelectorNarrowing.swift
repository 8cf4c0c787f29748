import VigilAddressing
import VigilWire

/// Traffic selector narrowing (RFC 7296 §2.9): the responder keeps the part of each proposed selector that its
/// policy allows; the initiator accepts only selectors inside what it proposed.
enum TrafficSelectorNarrowing {
    /// The intersections of the proposed selectors with the allowed prefixes. Only results that are whole prefixes
    /// are kept (the kernel and the daemon speak prefixes), each only once and none inside another; at most
    /// `IKEv2Tunables.maximumNarrowedTrafficSelectors` (a subset is still a narrowing, §2.9). An empty result means
    /// TS_UNACCEPTABLE.
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
                guard narrowed.prefix != nil, !result.contains(where: { covers($0, narrowed) }) else { continue }
                result.removeAll { covers(narrowed, $0) }
                // The work stays bounded however many selectors a peer proposes: the list never grows past the cap.
                guard result.count < IKEv2Tunables.maximumNarrowedTrafficSelectors else { return result }
                result.append(narrowed)
            }
        }
        return result
    }

    /// True when `outer` matches every packet `inner` matches (same family, address and port ranges inside, any
    /// protocol or the same one).
    static func covers(_ outer: IKEv2.TrafficSelector, _ inner: IKEv2.TrafficSelector) -> Bool {
        outer.startAddress.family == inner.startAddress.family
            && outer.startAddress <= inner.startAddress && inner.endAddress <= outer.endAddress
            && (outer.ipProtocol == 0 || outer.ipProtocol == inner.ipProtocol)
            && outer.startPort <= inner.startPort && inner.endPort <= outer.endPort
    }

    /// True when every selector lies inside one of the prefixes.
    static func isWithin(_ selectors: [IKEv2.TrafficSelector], _ prefixes: [IPPrefix]) -> Bool {
        !selectors.isEmpty && selectors.allSatisfy { selector in
            prefixes.contains { $0.contains(selector.startAddress) && $0.contains(selector.endAddress) }
        }
    }

    /// True when every selector lies inside one of the selectors a Child SA was negotiated with.
    static func isWithin(_ selectors: [IKEv2.TrafficSelector], child negotiated: [IKEv2.TrafficSelector]) -> Bool {
        !selectors.isEmpty && selectors.allSatisfy { selector in negotiated.contains { covers($0, selector) } }
    }

    static func prefixes(_ selectors: [IKEv2.TrafficSelector]) -> [IPPrefix] {
        selectors.compactMap(\.prefix)
    }
}
