/// Running-configs written from Cisco's documented IOS / IOS XE syntax (crypto map, crypto isakmp, crypto ipsec
/// transform-set, access-list extended, crypto ikev2 proposal/policy/keyring/profile): not captured from a router.
enum Fixtures {
    /// A branch router on IKEv1: two crypto maps on two interfaces, a backup peer, global keepalive without a retry,
    /// ACLs with host, any and wildcard masks, and the usual lines that are not IPsec.
    static let ikev1 = """
    Building configuration...

    Current configuration : 2817 bytes
    !
    version 15.4
    service timestamps debug datetime msec
    hostname branch1
    !
    ip domain name example.net
    !
    crypto isakmp policy 10
     encr aes 256
     hash sha256
     authentication pre-share
     group 14
     lifetime 28800
    crypto isakmp policy 20
     encr aes
     authentication pre-share
     group 19
     lifetime 28800
    crypto isakmp key hq-primary-key address 198.51.100.1
    crypto isakmp key hq-backup-key address 198.51.100.2 no-xauth
    crypto isakmp key partner-key address 203.0.113.0 255.255.255.0
    crypto isakmp keepalive 10 periodic
    !
    crypto ipsec transform-set TS-AES256 esp-aes 256 esp-sha256-hmac
     mode tunnel
    crypto ipsec transform-set TS-AES128 esp-aes esp-sha-hmac
     mode tunnel
    crypto ipsec transform-set TS-GCM esp-gcm 256
    !
    crypto map HQ 10 ipsec-isakmp
     description to headquarters
     set peer 198.51.100.2
     set peer 198.51.100.1 default
     set security-association lifetime seconds 3600
     set security-association idle-time 600
     set transform-set TS-GCM TS-AES256
     set pfs group14
     match address HQ-TRAFFIC
    crypto map HQ 20 ipsec-isakmp
     set peer 198.51.100.1
     set transform-set TS-AES128
     match address 101
    !
    crypto map PARTNER 10 ipsec-isakmp
     set peer 203.0.113.20
     set peer 203.0.113.21
     set transform-set TS-AES256
     set security-association lifetime seconds 7200
     match address PARTNER-TRAFFIC
    !
    interface GigabitEthernet0/0
     description WAN to the ISP
     ip address 192.0.2.1 255.255.255.0
     duplex auto
     crypto map HQ
    !
    interface GigabitEthernet0/1
     ip address 192.0.2.129 255.255.255.128
     crypto map PARTNER
    !
    interface GigabitEthernet0/2
     ip address 10.1.0.1 255.255.0.0
    !
    ip access-list extended HQ-TRAFFIC
     remark branch LAN to HQ
     10 permit ip 10.1.0.0 0.0.255.255 10.2.0.0 0.0.255.255
     20 permit ip host 10.1.0.10 host 10.9.9.9
    ip access-list extended PARTNER-TRAFFIC
     permit ip 10.5.0.0 0.0.0.255 172.16.20.0 0.0.0.255
    access-list 101 permit ip 10.3.0.0 0.0.0.255 10.4.0.0 0.0.0.255
    !
    ip route 0.0.0.0 0.0.0.0 192.0.2.254
    !
    line vty 0 4
     transport input ssh
    !
    end
    """

    /// A head-end on IKEv2 (IOS XE): proposals, a policy, a keyring, a profile with dpd, a crypto map with two peers.
    static let ikev2 = """
    hostname hub
    crypto ikev2 proposal PROP-CBC
     encryption aes-cbc-256 aes-cbc-128
     integrity sha256 sha1
     group 19 14
    crypto ikev2 proposal PROP-GCM
     encryption aes-gcm-256
     prf sha384
     group 20
    !
    crypto ikev2 policy POL
     match address local 192.0.2.1
     proposal PROP-GCM
     proposal PROP-CBC
    !
    crypto ikev2 keyring KR
     peer site-a
      address 198.51.100.10
      pre-shared-key site-a-key
     peer site-a-backup
      address 198.51.100.11 255.255.255.255
      pre-shared-key 0 site-a-backup-key
    !
    crypto ikev2 profile PROF
     match identity remote address 198.51.100.0 255.255.255.0
     identity local fqdn hub.example.net
     authentication remote pre-share
     authentication local pre-share
     keyring local KR
     lifetime 14400
     dpd 10 3 on-demand
    !
    crypto ipsec transform-set TS esp-gcm 256
     mode tunnel
    !
    crypto map VPN 10 ipsec-isakmp
     set peer 198.51.100.10 default
     set peer 198.51.100.11
     set transform-set TS
     set pfs group20
     set ikev2-profile PROF
     match address SITE-A
    !
    ip access-list extended SITE-A
     permit ip 10.10.0.0 0.0.255.255 any
    !
    interface GigabitEthernet1
     ip address 192.0.2.1 255.255.255.0
     crypto map VPN
    """
}
