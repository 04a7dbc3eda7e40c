-- astcti-server: the agents' table, exactly as the original AstCTIServer used it (Docs/cti.sql).
--
-- Load it into the database named by MYSQL_DBMS, e.g.:
--   mariadb -u root -e "CREATE DATABASE IF NOT EXISTS cti"
--   mariadb -u root cti < sql/cti.sql
-- It is safe on an existing AstCTI database: the table is created only if it does not exist, nothing
-- is dropped and no account is added (the original's dump dropped the table and added test/test).
--
-- Two MySQL accounts are recommended, as the original README did:
--   * the server's (MYSQL_USER/MYSQL_PASS): it only reads the table:
--       CREATE USER 'cti'@'127.0.0.1' IDENTIFIED BY 'change-me';
--       GRANT SELECT ON cti.cti TO 'cti'@'127.0.0.1';
--   * the clients' (the original AstCTIClient writes its own EXT before every login):
--       CREATE USER 'cticlient'@'%' IDENTIFIED BY 'change-me-too';
--       GRANT SELECT, UPDATE (EXT) ON cti.cti TO 'cticlient'@'%';
--
-- Columns: USERNAME = login name; SECRET = lowercase hex MD5 of the password (MySQL MD5('...'));
-- HOST = never used (may be NULL); EXT = the channel prefix the agent answers on, e.g. SIP/201,
-- PJSIP/201 or Agent/1001 (written by the client; a login with a NULL or empty EXT is refused).

CREATE TABLE IF NOT EXISTS `cti` (
  `USERNAME` varchar(255) default NULL,
  `SECRET` varchar(255) default NULL,
  `HOST` varchar(255) default NULL,
  `EXT` varchar(255) default NULL,
  UNIQUE KEY `USERNAME` (`USERNAME`),
  UNIQUE KEY `EXT` (`EXT`)
) ENGINE=MyISAM DEFAULT CHARSET=utf8;

-- Agents are added by you, one row each, with their own password, e.g.:
--   INSERT INTO cti VALUES ('alice', MD5('her password'), NULL, 'PJSIP/201');
