BEGIN TRANSACTION;
CREATE TABLE deliveries (
	id INTEGER NOT NULL, 
	issue_number INTEGER NOT NULL, 
	subscriber_id INTEGER NOT NULL, 
	email VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	attempts INTEGER NOT NULL, 
	last_error TEXT NOT NULL, 
	message_id TEXT, 
	claimed_by TEXT, 
	claimed_at DATETIME, 
	next_attempt_at DATETIME, 
	sent_at DATETIME, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_delivery_issue_subscriber UNIQUE (issue_number, subscriber_id), 
	FOREIGN KEY(issue_number) REFERENCES issues (number), 
	FOREIGN KEY(subscriber_id) REFERENCES subscribers (id)
);
INSERT INTO "deliveries" VALUES(1,1,1,'ada@example.org','pending',0,'',NULL,NULL,NULL,NULL,NULL,'2026-11-30 08:00:00.000000');
INSERT INTO "deliveries" VALUES(2,1,2,'grace@example.org','pending',0,'',NULL,NULL,NULL,NULL,NULL,'2026-11-30 08:00:00.000000');
CREATE TABLE events (
	id INTEGER NOT NULL, 
	subscriber_id INTEGER, 
	email VARCHAR NOT NULL, 
	kind VARCHAR NOT NULL, 
	detail TEXT NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(subscriber_id) REFERENCES subscribers (id)
);
INSERT INTO "events" VALUES(1,1,'ada@example.org','subscribed','added','2026-11-30 08:00:00.000000');
INSERT INTO "events" VALUES(2,2,'grace@example.org','subscribed','added','2026-11-30 08:00:00.000000');
CREATE TABLE issues (
	number INTEGER NOT NULL, 
	"key" VARCHAR NOT NULL, 
	title TEXT NOT NULL, 
	subject TEXT, 
	status VARCHAR NOT NULL, 
	paper_ids JSON NOT NULL, 
	papers JSON, 
	editor_note TEXT NOT NULL, 
	html TEXT, 
	text TEXT, 
	created_at DATETIME NOT NULL, 
	frozen_at DATETIME, 
	PRIMARY KEY (number), 
	UNIQUE ("key")
);
INSERT INTO "issues" VALUES(1,'2026-W49','Issue 1','Subject','frozen','[]','[]','','<p>x</p>','x','2026-11-30 08:00:00.000000','2026-11-30 08:00:00.000000');
CREATE TABLE locks (
	name VARCHAR NOT NULL, 
	holder TEXT NOT NULL, 
	acquired_at DATETIME NOT NULL, 
	heartbeat_at DATETIME NOT NULL, 
	PRIMARY KEY (name)
);
CREATE TABLE meta (
	"key" VARCHAR NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO "meta" VALUES('secret_key','v1-test-secret');
CREATE TABLE papers (
	id VARCHAR NOT NULL, 
	title TEXT NOT NULL, 
	authors JSON NOT NULL, 
	abstract TEXT NOT NULL, 
	url TEXT NOT NULL, 
	pdf_url TEXT, 
	code_url TEXT, 
	thumbnail_url TEXT, 
	score INTEGER, 
	published_at DATETIME, 
	first_seen_at DATETIME NOT NULL, 
	last_seen_at DATETIME NOT NULL, 
	sources JSON NOT NULL, 
	page_url TEXT, 
	PRIMARY KEY (id)
);
INSERT INTO "papers" VALUES('arxiv:2401.00001','A paper','["Ada Lovelace"]','About things.','https://arxiv.org/abs/2401.00001',NULL,NULL,NULL,12,NULL,'2026-11-30 08:00:00.000000','2026-11-30 08:00:00.000000','["sample"]',NULL);
CREATE TABLE schema_migrations (
	number INTEGER NOT NULL, 
	description VARCHAR NOT NULL, 
	applied_at DATETIME NOT NULL, 
	PRIMARY KEY (number)
);
INSERT INTO "schema_migrations" VALUES(1,'initial schema: papers, sources, issues, subscribers, deliveries, events, locks','2026-12-04 18:51:06.836781');
CREATE TABLE sends (
	id INTEGER NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE source_state (
	source TEXT NOT NULL, 
	etag TEXT, 
	last_modified TEXT, 
	last_fetched_at DATETIME, 
	last_status TEXT, 
	PRIMARY KEY (source)
);
CREATE TABLE subscribers (
	id INTEGER NOT NULL, 
	email VARCHAR NOT NULL, 
	email_key VARCHAR NOT NULL, 
	name TEXT NOT NULL, 
	status VARCHAR NOT NULL, 
	status_reason TEXT NOT NULL, 
	attributes JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	confirmed_at DATETIME, 
	status_changed_at DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (email_key)
);
INSERT INTO "subscribers" VALUES(1,'ada@example.org','ada@example.org','Ada','active','','{}','2026-11-30 08:00:00.000000','2026-11-30 08:00:00.000000','2026-11-30 08:00:00.000000','2026-11-30 08:00:00.000000');
INSERT INTO "subscribers" VALUES(2,'grace@example.org','grace@example.org','Grace','active','','{}','2026-11-30 08:00:00.000000','2026-11-30 08:00:00.000000','2026-11-30 08:00:00.000000','2026-11-30 08:00:00.000000');
CREATE INDEX ix_deliveries_claim ON deliveries (issue_number, status, id);
CREATE INDEX ix_deliveries_sent_at ON deliveries (sent_at);
COMMIT;
