/*
 * inbox: SMS messages members send, each recorded once (sms_inbound).
 */
#ifndef CHAMAD_INBOX_H
#define CHAMAD_INBOX_H

#include "net/db.h"

/*
 * Records one inbound message, with the sender's user if the number is a
 * member's; nothing when the provider already delivered that id (no row
 * back: the message was seen before).  $1 provider, $2 provider message
 * id, $3 sender (E.164), $4 text with any PIN masked, $5 command name.
 */
extern const struct db_stmt inbox_record;
enum {
	INBOX_ID,
	INBOX_USER_ID,	/* decimal, "" when the sender is not a user */
	INBOX_LANG,	/* the user's preferred language code, "" for none */
};

#endif
