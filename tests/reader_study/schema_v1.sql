-- reader_study schema version 1, as SQLite created it by the first release; used to test the migration to 2

CREATE TABLE reader (
	id INTEGER NOT NULL,
	display_name VARCHAR(200) NOT NULL,
	role VARCHAR(16) NOT NULL,
	token_id VARCHAR(32) NOT NULL,
	token_salt BLOB NOT NULL,
	token_hash BLOB NOT NULL,
	active BOOLEAN NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT ck_reader_role CHECK (role IN ('reader', 'admin'))
);

CREATE INDEX ix_reader_token_id ON reader (token_id);

CREATE TABLE schema_version (
	version INTEGER NOT NULL,
	PRIMARY KEY (version)
);

CREATE TABLE study (
	id INTEGER NOT NULL,
	name VARCHAR(200) NOT NULL,
	instructions TEXT NOT NULL,
	status VARCHAR(16) NOT NULL,
	seed INTEGER NOT NULL,
	allow_back BOOLEAN NOT NULL,
	show_reference BOOLEAN NOT NULL,
	repeat_reads INTEGER NOT NULL,
	washout_days FLOAT NOT NULL,
	min_distance INTEGER NOT NULL,
	spec JSON NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT ck_study_status CHECK (status IN ('draft', 'open', 'closed')),
	CONSTRAINT ck_study_repeat_reads CHECK (repeat_reads >= 1),
	CONSTRAINT ck_study_washout CHECK (washout_days >= 0),
	CONSTRAINT ck_study_min_distance CHECK (min_distance >= 0),
	UNIQUE (name)
);

CREATE TABLE audit_event (
	id INTEGER NOT NULL,
	created_at DATETIME NOT NULL,
	actor_id INTEGER,
	study_id INTEGER,
	action VARCHAR(64) NOT NULL,
	detail JSON NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(actor_id) REFERENCES reader (id) ON DELETE SET NULL,
	FOREIGN KEY(study_id) REFERENCES study (id) ON DELETE SET NULL
);

CREATE INDEX ix_audit_study ON audit_event (study_id, created_at);

CREATE TABLE "case" (
	id INTEGER NOT NULL,
	study_id INTEGER NOT NULL,
	case_key VARCHAR(200) NOT NULL,
	source_path TEXT NOT NULL,
	window_low FLOAT NOT NULL,
	window_high FLOAT NOT NULL,
	slices JSON NOT NULL,
	plane VARCHAR(16) NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_case_key UNIQUE (study_id, case_key),
	CONSTRAINT ck_case_window CHECK (window_high > window_low),
	FOREIGN KEY(study_id) REFERENCES study (id) ON DELETE CASCADE
);

CREATE TABLE enrollment (
	study_id INTEGER NOT NULL,
	reader_id INTEGER NOT NULL,
	enrolled_at DATETIME NOT NULL,
	PRIMARY KEY (study_id, reader_id),
	FOREIGN KEY(study_id) REFERENCES study (id) ON DELETE CASCADE,
	FOREIGN KEY(reader_id) REFERENCES reader (id) ON DELETE CASCADE
);

CREATE TABLE question (
	id INTEGER NOT NULL,
	study_id INTEGER NOT NULL,
	"key" VARCHAR(64) NOT NULL,
	position INTEGER NOT NULL,
	kind VARCHAR(32) NOT NULL,
	text TEXT NOT NULL,
	required BOOLEAN NOT NULL,
	options JSON NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_question_key UNIQUE (study_id, "key"),
	CONSTRAINT uq_question_position UNIQUE (study_id, position),
	CONSTRAINT ck_question_kind CHECK (kind IN ('likert', 'single_choice', 'real_vs_synthetic', 'free_text')),
	FOREIGN KEY(study_id) REFERENCES study (id) ON DELETE CASCADE
);

CREATE TABLE item (
	id INTEGER NOT NULL,
	public_id VARCHAR(64) NOT NULL,
	study_id INTEGER NOT NULL,
	case_id INTEGER NOT NULL,
	condition VARCHAR(64) NOT NULL,
	dose FLOAT,
	generator VARCHAR(200),
	n_slices INTEGER NOT NULL,
	is_reference BOOLEAN NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT ck_item_dose CHECK (dose IS NULL OR (dose >= 0 AND dose <= 1)),
	CONSTRAINT ck_item_slices CHECK (n_slices >= 1),
	UNIQUE (public_id),
	FOREIGN KEY(study_id) REFERENCES study (id) ON DELETE CASCADE,
	FOREIGN KEY(case_id) REFERENCES "case" (id) ON DELETE CASCADE
);

CREATE INDEX ix_item_study_case ON item (study_id, case_id);

CREATE TABLE assignment (
	id INTEGER NOT NULL,
	study_id INTEGER NOT NULL,
	reader_id INTEGER NOT NULL,
	item_id INTEGER NOT NULL,
	iteration INTEGER NOT NULL,
	position INTEGER NOT NULL,
	served_at DATETIME,
	completed_at DATETIME,
	PRIMARY KEY (id),
	CONSTRAINT uq_assignment_position UNIQUE (reader_id, study_id, iteration, position),
	CONSTRAINT uq_assignment_item UNIQUE (reader_id, item_id, iteration),
	CONSTRAINT ck_assignment_iteration CHECK (iteration >= 1),
	CONSTRAINT ck_assignment_position CHECK (position >= 0),
	FOREIGN KEY(study_id) REFERENCES study (id) ON DELETE CASCADE,
	FOREIGN KEY(reader_id) REFERENCES reader (id) ON DELETE CASCADE,
	FOREIGN KEY(item_id) REFERENCES item (id) ON DELETE CASCADE
);

CREATE INDEX ix_assignment_reader_study ON assignment (reader_id, study_id, iteration, completed_at);

CREATE TABLE item_image (
	item_id INTEGER NOT NULL,
	position INTEGER NOT NULL,
	png BLOB NOT NULL,
	PRIMARY KEY (item_id, position),
	CONSTRAINT ck_item_image_position CHECK (position >= 0),
	FOREIGN KEY(item_id) REFERENCES item (id) ON DELETE CASCADE
);

CREATE TABLE answer (
	id INTEGER NOT NULL,
	study_id INTEGER NOT NULL,
	reader_id INTEGER NOT NULL,
	item_id INTEGER NOT NULL,
	question_id INTEGER NOT NULL,
	assignment_id INTEGER NOT NULL,
	iteration INTEGER NOT NULL,
	value TEXT NOT NULL,
	confidence INTEGER,
	created_at DATETIME NOT NULL,
	duration_ms INTEGER,
	PRIMARY KEY (id),
	CONSTRAINT uq_answer UNIQUE (reader_id, item_id, question_id, iteration),
	CONSTRAINT ck_answer_confidence CHECK (confidence IS NULL OR (confidence >= 1 AND confidence <= 5)),
	CONSTRAINT ck_answer_duration CHECK (duration_ms IS NULL OR duration_ms >= 0),
	FOREIGN KEY(study_id) REFERENCES study (id) ON DELETE CASCADE,
	FOREIGN KEY(reader_id) REFERENCES reader (id) ON DELETE CASCADE,
	FOREIGN KEY(item_id) REFERENCES item (id) ON DELETE CASCADE,
	FOREIGN KEY(question_id) REFERENCES question (id) ON DELETE CASCADE,
	FOREIGN KEY(assignment_id) REFERENCES assignment (id) ON DELETE CASCADE
);

CREATE INDEX ix_answer_study ON answer (study_id);
