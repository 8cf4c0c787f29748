#ifndef VIGIL_CNETLINK_SHIM_H
#define VIGIL_CNETLINK_SHIM_H
// libnl headers Vigil uses. Static inline wrappers appear here only for what Swift cannot import
// (function-like macros, variadic functions); each is prefixed `vigil_` and says why it exists.
#include <netlink/netlink.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/socket.h>
#include <netlink/cache.h>
#include <netlink/addr.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <netlink/route/link.h>
#include <netlink/route/nexthop.h>
#include <netlink/xfrm/sa.h>
#include <netlink/xfrm/sp.h>
#include <netlink/xfrm/selector.h>
#include <netlink/xfrm/template.h>
#include <netlink/xfrm/lifetime.h>

#endif
