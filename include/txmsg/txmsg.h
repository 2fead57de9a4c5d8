/* txmsg: transactional messaging for C services. Include this one header. */
#ifndef TXMSG_H
#define TXMSG_H

#include "txmsg/api.h"
#include "txmsg/version.h"
#include "txmsg/status.h"
#include "txmsg/error.h"
#include "txmsg/log.h"
#include "txmsg/message.h"
#include "txmsg/db.h"
#include "txmsg/uow.h"
#include "txmsg/outbox.h"
#include "txmsg/inbox.h"
#include "txmsg/transport.h"
#include "txmsg/consumer.h"
#include "txmsg/service.h"
#include "txmsg/app.h"
#include "txmsg/admin.h"

#endif
