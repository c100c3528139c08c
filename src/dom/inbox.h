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

/*
 * DISPUTE: the member $1 (phone $2) says the last cash entry recorded for
 * them within 14 days is wrong.  Audited (with $4, the message with any
 * PIN masked) and the chama's treasurer and chairperson told by SMS
 * (sms_dispute_officials, keyed on $3, the inbound message's key); the
 * entry itself stands until an official reverses it.  One row (the
 * contribution's id) when there was such an entry, else none.
 */
extern const struct db_stmt inbox_dispute;

#endif
